"""Data: the database files, the clip datasets and loaders, clip sampling, frame decoding and resizing, the
dataset builders (``util.data.datasets``) and the synthetic datasets."""
