"""Where signals leave the process: the OTel SDK pipeline behind `/metrics` and OTLP push."""
