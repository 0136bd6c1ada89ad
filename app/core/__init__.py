"""Settings, logging, metrics and the error shape shared by the whole serving half."""
