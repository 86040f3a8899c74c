"""The HTTP API: the app and its errors (app.py), who is asking (auth.py), SuperOffice's, iService's and Genesys'
routes (superoffice.py, iservice.py, genesys.py), the CometD notifications (cometd.py, notifications.py),
/metrics and /healthz (metrics.py), the published shapes (schemas.py) and the uvicorn server on serve's own event
loop (server.py)."""
