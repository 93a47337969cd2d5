"""Everything around the networks of ``models/``, one subpackage per concept; dependencies point one way
(cli -> train / evaluation / pictures -> data -> models -> errors, io):

* ``util.errors``: the error classes (one ``error:`` line each on the command line); ``util.io``: atomic
  writes, output checks, ``torch.load`` of user files; ``util.distributed``: devices and torchrun.
* ``util.data``: database files, clip datasets and loaders, clip sampling, frames, resizing, the dataset
  builders (``util.data.datasets``) and the synthetic datasets.
* ``util.train``: the trainer and one training step, losses, the run directory and resume state, outputs.
* ``util.evaluation``: feature extraction, the metrics, re-ranking, scoring, the features file, embedding your
  own tracklets, search, validation.
* ``util.pictures``: training and CMC curves, ranked results, attention maps.
* ``util.cli``: the command-line options and the commands; ``python -m util.synthetic``, ``util.visualize``
  and ``util.splits_summary`` forward there.
"""
