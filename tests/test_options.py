"""Command-line flags: the original's names and defaults, the --stripe abbreviation, real booleans, argument
checks, and the run_*.sh scripts' command lines."""
import os
import stat
import subprocess

import pytest

from util.cli.options import build_parser, parse_args, str2bool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every flag of the original parser.py with its default.
ORIGINAL_DEFAULTS = {
    'train_txt': None, 'train_info': None, 'test_txt': None, 'test_info': None, 'query_info': None,
    'lr': 0.001, 'lr_step_size': 100, 'class_per_batch': 16, 'track_per_class': 3, 'batch_size': 32,
    'n_epochs': 500, 'num_workers': 16, 'S': 6, 'latent_dim': 2048, 'load_ckpt': None, 'log_path': 'loss.txt',
    'ckpt': None, 'optimizer': 'adam', 'resume_validation': False, 'model_type': 'resnet50', 'stride': 1,
    'temporal': 'mean', 'frame_id_loss': False, 'track_id_loss': False, 'non_layers': None, 'stripes': None,
}
ADDED_DEFAULTS = {
    'device': 'auto', 'seed': 0, 'height': 256, 'width': 128, 'pretrained': 'imagenet', 'rank_size': 10000,
    'amp': 'none', 'channels_last': False, 'compile': False, 'decode_on_device': False,
    'resize_on_device': False, 'gallery_info': None, 'test_sampling': 'chunks', 'test_stride': 4,
    'ap_rule': 'trapezoid', 'clothes_info': None, 'location_info': None, 'scale_info': None,
}
TRAIN_DEFAULTS = {'eval_every': 10, 'resume': None, 'overwrite': False, 'weight_decay': None, 'tensorboard': None}
EVAL_DEFAULTS = {'save_features': None, 'features': None, 'visualize_ranks': None, 'num_queries': 10, 'topk': 10,
                 'results': None, 'cmc_plot': None, 'chance_level': False, 'rerank': False, 'rerank_k1': 20,
                 'rerank_k2': 6, 'rerank_lambda': 0.3}

DB = ['--train_txt', 't.txt', '--train_info', 't.npy', '--test_txt', 'q.txt', '--test_info', 'q.npy',
      '--query_info', 'i.npy']


@pytest.mark.parametrize('script', ['baseline', 'NL', 'evaluate'])
def test_every_original_flag_with_its_default(script):
    args = vars(build_parser(script).parse_args([]))
    extra = TRAIN_DEFAULTS if script != 'evaluate' else EVAL_DEFAULTS
    expected = {**ORIGINAL_DEFAULTS, **ADDED_DEFAULTS, **extra, 'script': script}
    assert args == expected


SCRIPT_MODULES = {'baseline': 'train_baseline', 'NL': 'train_NL', 'evaluate': 'evaluate',
                  'extract': 'extract_features', 'search': 'search', 'export': 'export_onnx'}


@pytest.mark.parametrize('script', sorted(SCRIPT_MODULES))
def test_help_of_each_script_explains_every_flag(script, capsys):
    """`python <script>.py --help` exits 0 and prints every flag with its explanation and default."""
    import importlib
    module = importlib.import_module(SCRIPT_MODULES[script])
    with pytest.raises(SystemExit) as exit_info:
        module.main(['--help'])
    assert exit_info.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())  # argparse wraps lines: compare word sequences
    for action in build_parser(script)._actions:
        flag = action.option_strings[-1]
        assert flag in text, flag
        explanation = ' '.join(action.help.split('%(default)s')[0].split())[:40]
        assert action.help and explanation in text, flag
        if action.default not in (None, False, '==SUPPRESS==') and action.help != '==SUPPRESS==':
            assert f'(default: {action.default})' in text, flag


def test_stripe_abbreviation_of_the_original_readme():
    args = build_parser('evaluate').parse_args(['--stripe', '16', '16', '16', '16'])
    assert args.stripes == [16, 16, 16, 16]
    for script in ('baseline', 'NL', 'evaluate'):
        flags = [s for a in build_parser(script)._actions for s in a.option_strings]
        assert [f for f in flags if f.startswith('--stripe')] == ['--stripes']


def test_original_flag_types():
    args = build_parser('NL').parse_args(['--lr', '0.0001', '--S', '8', '--non_layers', '0', '2', '3', '0',
                                          '--track_id_loss', '--temporal', 'Done'])
    assert args.lr == 1e-4 and args.S == 8 and args.non_layers == [0, 2, 3, 0]
    assert args.track_id_loss is True and args.frame_id_loss is False


@pytest.mark.parametrize('text,value', [('True', True), ('true', True), ('1', True), ('yes', True),
                                        ('False', False), ('false', False), ('0', False), ('no', False)])
def test_resume_validation_is_a_real_boolean(text, value):
    # the original's type=bool read 'False' as True
    assert build_parser('NL').parse_args(['--resume_validation', text]).resume_validation is value
    assert str2bool(text) is value


def test_resume_validation_rejects_other_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser('NL').parse_args(['--resume_validation', 'maybe'])
    assert exit_info.value.code == 2
    assert "expected a boolean" in capsys.readouterr().err


def _error(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(script, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize('script,argv,message', [
    ('NL', ['--model_type', 'resnet50_NL', '--temporal', 'Done', '--ckpt', 'c'], 'missing --train_txt'),
    ('NL', DB + ['--model_type', 'resnet50_NL', '--temporal', 'Done'], 'missing --ckpt'),
    ('NL', DB + ['--ckpt', 'c'], "--model_type 'resnet50' is not a model"),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL'],
     "--model_type resnet50_NL: resnet50_NL pools inside the network: temporal must be 'Done', got 'mean'"),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--temporal', 'Done'],
     "--model_type resnet50_s1: resnet50_s1 pools frame features with temporal 'mean' or 'max' (FPL), got 'Done'"),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--frame_id_loss'],
     '--frame_id_loss needs per-frame logits'),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--non_layers', '0', '2'],
     'non_layers must be 4 integers (one per stage, layer1..layer4), got 2: [0, 2]'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--class_per_batch', '1'],
     '--class_per_batch must be at least 2'),
    ('evaluate', ['--model_type', 'resnet50_s1', '--test_txt', 'a', '--test_info', 'b', '--query_info', 'c'],
     '--load_ckpt is required'),
    ('evaluate', ['--features', 'f.npz', '--save_features', 'g.npz'], '--save_features has nothing new'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--track_per_class', '1'],
     '--track_per_class must be at least 2: the triplet loss needs a positive'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--lr', '-1'],
     '--lr must be a finite number above 0, got -1.0'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--lr', '0'],
     '--lr must be a finite number above 0, got 0.0'),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--lr', 'nan'],
     '--lr must be a finite number above 0, got nan'),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--lr', 'inf'],
     '--lr must be a finite number above 0, got inf'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--width', '8'],
     'frames must be at least 32 x 16 pixels (height x width), got 256 x 8'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--height', '16'],
     'frames must be at least 32 x 16 pixels (height x width), got 16 x 128'),
    ('evaluate', ['--model_type', 'resnet50_s1', '--width', '0', '--load_ckpt', 'c.pth'],
     'frames must be at least 32 x 16 pixels (height x width), got 256 x 0'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--resume', 'c', '--overwrite'],
     '--overwrite starts a new run and --resume continues one'),
    ('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--weight_decay=-1e-4'],
     '--weight_decay must be a finite number, 0 or more, got -0.0001'),
    ('NL', DB + ['--ckpt', 'c', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--weight_decay', 'nan'],
     '--weight_decay must be a finite number, 0 or more, got nan'),
])
def test_inconsistent_flags_are_refused(script, argv, message, capsys):
    assert message in _error(script, argv, capsys)


def test_valid_command_lines_pass():
    args = parse_args('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--temporal', 'max'])
    assert args.script == 'baseline' and args.temporal == 'max'
    args = parse_args('baseline', DB + ['--ckpt', 'c', '--model_type', 'resnet50_s1', '--height', '32', '--width',
                                        '16', '--track_per_class', '2', '--lr', '1e-9', '--overwrite'])
    assert (args.height, args.width, args.track_per_class, args.overwrite) == (32, 16, 2, True)
    args = parse_args('evaluate', ['--features', 'f.npz'])  # re-scoring needs neither a model nor images
    assert args.features == 'f.npz'


@pytest.mark.parametrize('script,optimizer,default', [('baseline', 'adam', 1e-5), ('NL', 'adam', 5e-5),
                                                      ('baseline', 'sgd', 1e-4), ('NL', 'sgd', 1e-4)])
def test_weight_decay_default_depends_on_the_script_and_the_optimiser(script, optimizer, default):
    """The original scripts' values: Adam 1e-5 (train_baseline.py) or 5e-5 (train_NL.py), SGD 1e-4; parse_args
    resolves the default once, and an explicit --weight_decay (0 included) wins."""
    model = ['--model_type', 'resnet50_s1'] if script == 'baseline' else ['--model_type', 'resnet50_NL',
                                                                          '--temporal', 'Done']
    argv = DB + ['--ckpt', 'c', '--optimizer', optimizer] + model
    assert parse_args(script, argv).weight_decay == default
    assert parse_args(script, argv + ['--weight_decay', '0']).weight_decay == 0.0
    assert parse_args(script, argv + ['--weight_decay', '3e-4']).weight_decay == 3e-4


@pytest.mark.parametrize('module,text', [('train_baseline', '(default: 1e-05 with adam, 0.0001 with sgd)'),
                                         ('train_NL', '(default: 5e-05 with adam, 0.0001 with sgd)')])
def test_weight_decay_default_is_shown_in_help(module, text, capsys):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    assert f'--weight_decay WD weight decay of the optimiser {text}' in help_text
    assert '--tensorboard DIR' in help_text


# -- the shell scripts ----------------------------------------------------------------------------------------

def _script_argv(tmp_path, script_text, *extra):
    """Run a run_*.sh text with sh, PY pointing at a stub that prints its arguments; returns them."""
    stub = tmp_path / 'python_stub'
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / 'script.sh'
    script.write_text(script_text)
    out = subprocess.run(['sh', str(script), *extra], cwd=tmp_path, env={**os.environ, 'PY': str(stub)},
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def _uncomment_block(text, marker):
    """The script with the block titled `marker` active and every other command block commented out
    (blocks are separated by blank lines; a block's first line is its title comment)."""
    blocks = []
    for block in text.split('\n\n'):
        lines = block.split('\n')
        if marker in lines[0]:
            lines = lines[:1] + [line[1:] if line.startswith('#') else line for line in lines[1:]]
        elif any(line.startswith('"$PY"') for line in lines):
            lines = [line if line.startswith('#') else '#' + line for line in lines]
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def _parse_script(tmp_path, name, script, text, *extra):
    argv = _script_argv(tmp_path, text, *extra)
    assert os.path.basename(argv[0]) == name
    return parse_args(script, argv[1:])


def test_run_baseline_sh(tmp_path):
    args = _parse_script(tmp_path, 'train_baseline.py', 'baseline', _read('run_baseline.sh'), '--device', 'cpu')
    assert (args.model_type, args.temporal, args.n_epochs, args.lr, args.lr_step_size) == \
        ('resnet50_s1', 'mean', 300, 1e-4, 50)
    assert (args.class_per_batch, args.track_per_class, args.S, args.batch_size) == (8, 4, 8, 64)
    assert args.track_id_loss and not args.frame_id_loss and args.stride == 1
    assert args.train_txt == './MARS_database/train_path.txt' and args.ckpt == 'ckpt_baseline_mean'
    assert args.device == 'cpu'  # extra arguments pass through


def test_run_nl_sh_nvan_and_ste_nvan(tmp_path):
    text = _read('run_NL.sh')
    args = _parse_script(tmp_path, 'train_NL.py', 'NL', text, '--amp', 'bf16')
    assert (args.model_type, args.non_layers, args.stripes, args.temporal) == \
        ('resnet50_NL', [0, 2, 3, 0], None, 'Done')
    assert (args.n_epochs, args.lr, args.lr_step_size, args.class_per_batch, args.track_per_class, args.S) == \
        (200, 1e-4, 50, 8, 4, 8)
    assert args.ckpt == 'ckpt_NL_0230' and args.amp == 'bf16'
    ste = _parse_script(tmp_path, 'train_NL.py', 'NL', _uncomment_block(text, 'STE-NVAN'))
    assert (ste.model_type, ste.stripes, ste.ckpt) == ('resnet50_NL_stripe_hr', [16] * 4, 'ckpt_NL_stripe16_hr_0230')


def test_run_evaluate_sh_blocks(tmp_path):
    text = _read('run_evaluate.sh')
    nvan = _parse_script(tmp_path, 'evaluate.py', 'evaluate', text)
    assert (nvan.model_type, nvan.load_ckpt, nvan.non_layers) == ('resnet50_NL', './ckpt/NVAN.pth', [0, 2, 3, 0])
    base = _parse_script(tmp_path, 'evaluate.py', 'evaluate', _uncomment_block(text, 'ResNet50 + FPL'))
    assert (base.model_type, base.temporal, base.load_ckpt) == \
        ('resnet50_s1', 'mean', './ckpt/R50_baseline_mean.pth')
    ste = _parse_script(tmp_path, 'evaluate.py', 'evaluate', _uncomment_block(text, 'STE-NVAN'))
    assert (ste.model_type, ste.stripes, ste.batch_size, ste.load_ckpt) == \
        ('resnet50_NL_stripe_hr', [16] * 4, 128, './ckpt/STE_NVAN.pth')


def test_model_types_are_the_networks():
    import models.network
    import util.cli.options
    assert util.cli.options.MODEL_TYPES is models.network.MODEL_TYPES


def test_run_main_turns_file_system_faults_into_one_line(capsys):
    import errno

    from util.cli.options import run_main
    from util.errors import OutputError

    def full_disk(argv):
        raise OSError(errno.ENOSPC, 'No space left on device', '/data/ckpt/metrics.csv')

    def read_only(argv):
        raise OSError(errno.EROFS, 'Read-only file system')

    def output_error(argv):
        raise OutputError('--ckpt c: is not writable')

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(full_disk) == 2
    assert capsys.readouterr().err == 'error: /data/ckpt/metrics.csv: No space left on device\n'
    assert run_main(read_only) == 2 and capsys.readouterr().err == 'error: Read-only file system\n'
    assert run_main(output_error) == 2 and capsys.readouterr().err == 'error: --ckpt c: is not writable\n'
    assert run_main(interrupted) == 130 and capsys.readouterr().err == 'error: interrupted\n'

    def bug(argv):  # anything else is a bug of ours and keeps its traceback
        raise FileNotFoundError(errno.ENOENT, 'No such file or directory', 'x')
    with pytest.raises(FileNotFoundError):
        run_main(bug)
