"""Dataset builders: each benchmark's official layout turned into the project's database files.

One module per dataset (``mars``, ``dukev``, ``ilidsvid``, ``prid2011``, ``lsvid``); ``common`` holds what
they share: directory scanning, frame-name parsing, numeric frame order, split files and the write that
replaces a database directory as a whole. The top-level ``create_*_database.py`` scripts call them.
"""
