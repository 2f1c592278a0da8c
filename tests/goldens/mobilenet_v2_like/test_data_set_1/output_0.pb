
BpredictionsJ(¹p
=@>VPy<j$>ìÇí=T“ƒ<Œ'«>'½;®»<ýn=