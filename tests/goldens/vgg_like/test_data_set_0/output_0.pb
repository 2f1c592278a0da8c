
BpredictionsJ(Jœ˜=c`>æ=Pmß9¼j7;¦‘$>êŽ';_uÈ>Ž|L;ø½â=