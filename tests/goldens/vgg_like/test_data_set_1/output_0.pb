
BpredictionsJ(Ï„ñ=¡âÔ=4º=eV½={O£=´UÊ=ê¡×=e/î=VƒÔ=»¹=