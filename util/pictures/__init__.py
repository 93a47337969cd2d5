"""Pictures of a model and its training, one module per picture; ``python -m util.visualize`` draws them.

* :mod:`util.pictures.curves`: training curves of a ``metrics.csv``, and CMC curves.
* :mod:`util.pictures.ranks`: ranked retrieval results of saved features (PNGs and an index.html).
* :mod:`util.pictures.attention`: non-local attention maps of one clip.
"""
