"""fig/make_figures.py: the architecture diagrams are drawn at their documented sizes."""
import importlib.util
import os

from helpers import read_png


def test_make_figures(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fig', 'make_figures.py')
    spec = importlib.util.spec_from_file_location('make_figures', script)
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    written = make_figures.main(['--out_dir', str(tmp_path)])
    assert sorted(os.path.basename(p) for p in written) == ['NVAN.png', 'STE-NVAN.png', 'baseline.png']
    for path, (w, h) in zip(written, [(150, 48), (150, 64), (150, 64)]):  # canvas units of 1/10 inch
        assert read_png(path).shape[:2] == (round(h / 10 * make_figures.DPI), round(w / 10 * make_figures.DPI))
        assert os.path.getsize(path) < 300 * 1024
