"""JSON in the vendors' shapes (SuperOffice, iService) and the operator's, built from the model's dataclasses;
no SQL. Every `--json` of the command line (and the HTTP API) is built here."""
