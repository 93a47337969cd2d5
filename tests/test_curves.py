"""util.pictures.curves: metrics.csv reading and the training-curves PNG (size, empty columns, errors), and
``python -m util.visualize curves``."""
import errno

import numpy as np
import pytest
from helpers import read_png

from util.cli import visualize
from util.errors import DataError
from util.pictures import curves

METRICS_HEADER = 'epoch,trip_loss,frame_id_loss,track_id_loss,total_loss,lr,rank1,rank5,rank10,rank20,mAP,seconds\n'


def _write_metrics(path, rows):
    path.write_text(METRICS_HEADER + ''.join(r + '\n' for r in rows))
    return path


def test_curves_with_empty_columns(tmp_path):
    # frame_id_loss never used; validation only after epochs 2 and 3
    csv = _write_metrics(tmp_path / 'metrics.csv', [
        '1,0.90,,5.1,6.00,0.0001,,,,,,3.5',
        '2,0.70,,4.0,4.70,0.0001,0.5,0.7,0.8,0.9,0.35,3.4',
        '3,0.50,,3.2,3.70,1e-05,0.6,0.8,0.9,0.95,0.45,3.6'])
    out = curves.plot_training_curves(str(csv))
    assert out == str(tmp_path / 'training_curves.png')
    width, height = (round(v * curves.CURVES_DPI) for v in curves.CURVES_FIGSIZE)
    assert read_png(out).shape == (height, width, 3) == (420, 1400, 3)


def test_curves_without_validation_and_cli(tmp_path):
    csv = _write_metrics(tmp_path / 'metrics.csv', ['1,0.9,,,0.9,0.0001,,,,,,', '2,0.8,,,0.8,0.0001,,,,,,'])
    out = tmp_path / 'c.png'
    assert visualize.main(['curves', '--metrics', str(csv), '--out', str(out)]) == 0
    assert read_png(out).shape[:2] == (420, 1400)


def test_read_metrics_csv_values_and_empty_cells(tmp_path):
    csv = _write_metrics(tmp_path / 'metrics.csv',
                         ['1,0.9,,5.1,6.0,0.0001,,,,,,3.5', '2,0.7,,4.0,4.7,1e-05,0.5,,,,0.25,'])
    columns = curves.read_metrics_csv(str(csv))
    assert list(columns) == METRICS_HEADER.strip().split(',')
    assert columns['epoch'].tolist() == [1.0, 2.0] and columns['lr'].tolist() == [1e-4, 1e-5]
    assert np.isnan(columns['frame_id_loss']).all() and columns['rank1'][1] == 0.5 and np.isnan(columns['rank1'][0])
    assert all(c.dtype == np.float64 for c in columns.values())


def test_curves_errors(tmp_path, capsys):
    bad = tmp_path / 'bad.csv'
    bad.write_text('')
    with pytest.raises(DataError, match='"epoch" column'):
        curves.plot_training_curves(str(bad))
    bad.write_text('step,loss\n1,0.5\n')
    with pytest.raises(DataError, match='"epoch" column'):
        curves.plot_training_curves(str(bad))
    _write_metrics(bad, ['1,0.9,,x,0.9,0.0001,,,,,,'])
    with pytest.raises(DataError, match='line 2, column track_id_loss'):
        curves.plot_training_curves(str(bad))
    assert visualize.main(['curves', '--metrics', str(tmp_path / 'missing.csv')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'missing.csv: metrics file not found' in err


@pytest.mark.parametrize('fault, status, line', [
    (OSError(errno.ENOSPC, 'No space left on device', 'out.png'), 2, 'error: out.png: No space left on device\n'),
    (KeyboardInterrupt(), 130, 'error: interrupted\n')])
def test_cli_faults_are_one_line_as_in_every_script(tmp_path, monkeypatch, capsys, fault, status, line):
    """python -m util.visualize handles errors through util.cli.options.run_main, like the top-level scripts."""
    def fail(*args, **kwargs):
        raise fault
    monkeypatch.setattr(visualize, 'plot_training_curves', fail)
    assert visualize.main(['curves', '--metrics', str(tmp_path / 'metrics.csv')]) == status
    assert capsys.readouterr().err == line


def test_cmc_plot(tmp_path):
    from types import SimpleNamespace
    results = {'plain': SimpleNamespace(cmc=np.linspace(0.5, 1.0, 60), mAP=0.4),
               'rerank': SimpleNamespace(cmc=np.linspace(0.6, 1.0, 3), mAP=0.5)}  # shorter than max_rank
    curves.plot_cmc(str(tmp_path / 'cmc.png'), results)
    assert read_png(tmp_path / 'cmc.png').shape[:2] == (504, 720)  # 6 x 4.2 inches at 120 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cmc.png']  # written atomically: no temporary left
