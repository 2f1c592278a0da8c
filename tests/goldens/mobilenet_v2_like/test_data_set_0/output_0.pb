
BpredictionsJ(ğ¨Í=4äÍ=hOÉ=uÍ=ì³Ì=^ Í=lÌ=ÉdÎ=0IÌ=±Ì=