BscoresJ… I>îQ>O>
`L>{ØI>