
BlogitsJ(U›¨?<.Y@èÄ1ÀþQ)ÀÚÀ?ndÀ¬;~@HR>Xë‡¿†“ @