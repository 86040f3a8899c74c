"""SMTP and LMTP intake: the listener, the spool writer (250 after commit) and the spool worker."""
