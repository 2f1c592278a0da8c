
BpredictionsJ(O'=J…>ìç<ON>>ø!>Úˆ<EË >Œ,7;#|é<ö=‰=