"""The service layer: every write to the database goes through a module here."""
