"""HTTP routes and request/response schemas; each route only translates HTTP to a service call."""
