
BpredictionsJ(Q‡
=Κ@>gy<f/>‡Εν=„£ƒ<*«>°Z½;^Π<Λo=