"""Model cost table: parameters, GFLOPs per clip, eval latency, training step time and peak memory with
scaled_dot_product_attention next to the explicit softmax reference, for every model type.

    python benchmarks/bench_models.py [--quick] [--types ...] [--P 2 --K 2 --S 8] [--device cuda]

Same options as `python -m models.summary`, which does the work.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.summary import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
