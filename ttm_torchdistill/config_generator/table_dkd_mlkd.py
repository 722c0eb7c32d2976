"""The rows of the max-logit temperature's other hosts on CIFAR-100: DKD and MLKD, each plain and with ATKD's
standardised logits and max-logit temperature, for the 13 pairs of the TTM table (plain data, standard library only).

Sources: DKD = Zhao et al., CVPR 2022, with mdistiller (megvii-research/mdistiller: ``mdistiller/engine/cfg.py``,
``configs/cifar100/dkd/*.yaml``); MLKD = Jin, Wang & Lin, CVPR 2023, with its code
(Jin-Ying/Multi-Level-Logit-Distillation: ``mdistiller/engine/cfg.py``, ``configs/cifar100/ours/*.yaml``); LS = the
logit-standardisation paper (Sun et al., CVPR 2024) and its fork (sunshangquan/logit-standardization-KD: README,
``logs/``, ``configs/cifar100/mlkd/*.yaml``); ATKD = the max-logit code (kei813121/atkd: ``train_student.py``,
``distiller_zoo/{dkd,mlkd}.py``, ``helper/loops.py``). :mod:`.table` builds the rows with :func:`dkd_rows` and
:func:`mlkd_rows`; docs/mlkd.md explains the sources per pair.
"""
from typing import Callable, List, Optional, Tuple

from .references import ATKD_NO_TABLES, ATKD_PAPER, TTM_PAPER
from .schema import Experiment, Param, Reference

P = Param
#: ``cifar(method, student, teacher, hyper, reference, notes=...)``: the table's CIFAR-100 row builder.
CifarRow = Callable[..., Experiment]
LS_PAPER = 'Logit standardisation (CVPR 2024)'
LS_README = 'the logit-standardisation README'

# ------------------------------------------------------------------------------------------------------------
# DKD
# ------------------------------------------------------------------------------------------------------------
# student, teacher, mdistiller's config for the pair (None: it has none), its BETA (None: cfg.py's default 8.0),
# DKD top-1 of TTM Table 1/3 (the DKD paper's numbers; None: n/a there), results table
CIFAR100_DKD = (
    ('wrn_16_2', 'wrn_40_2', 'wrn40_2_wrn_16_2.yaml', 6.0, 76.24, 'Table 1'),
    ('wrn_40_1', 'wrn_40_2', 'wrn40_2_wrn_40_1.yaml', 6.0, 74.81, 'Table 1'),
    ('resnet20', 'resnet56', 'res56_res20.yaml', 2.0, 71.97, 'Table 1'),
    ('resnet20', 'resnet110', None, None, None, 'Table 1'),
    ('resnet32', 'resnet110', 'res110_res32.yaml', 2.0, 74.11, 'Table 1'),
    ('resnet8x4', 'resnet32x4', 'res32x4_res8x4.yaml', None, 76.32, 'Table 1'),
    ('vgg8', 'vgg13', 'vgg13_vgg8.yaml', 6.0, 74.68, 'Table 1'),
    ('MobileNetV2', 'vgg13', 'vgg13_mv2.yaml', 6.0, 69.71, 'Table 3'),
    ('MobileNetV2', 'ResNet50', 'res50_mv2.yaml', None, 70.35, 'Table 3'),
    ('vgg8', 'ResNet50', None, None, None, 'Table 3'),
    ('ShuffleV1', 'resnet32x4', 'res32x4_shuv1.yaml', None, 76.45, 'Table 3'),
    ('ShuffleV2', 'resnet32x4', 'res32x4_shuv2.yaml', None, 77.07, 'Table 3'),
    ('ShuffleV1', 'wrn_40_2', 'wrn40_2_shuv1.yaml', None, 76.70, 'Table 3'),
)
# The two pairs mdistiller has no config for: beta inferred, and where a DKD number is quoted.
DKD_INFERRED_BETA = {
    ('resnet20', 'resnet110'): P(2.0, 'inferred NCKD weight: mdistiller has no config for this pair; its '
                                      'resnet56->resnet20 and resnet110->resnet32 use 2.0, and so does the LS log '
                                      'dkd,resnet110,resnet20,2,15,2.0'),
    ('vgg8', 'ResNet50'): P(8.0, "inferred NCKD weight: mdistiller has no config for this pair; its default "
                                 '(cfg.py), as for ResNet50->MobileNetV2'),
}
DKD_OTHER_REFERENCES = {
    ('resnet20', 'resnet110'): Reference(LS_PAPER, 'README', 71.06, 'DKD row',
                                         note='TTM Table 1 has no DKD number for this pair'),
    ('vgg8', 'ResNet50'): Reference(TTM_PAPER, 'Table 3', None, note='no published DKD number for this pair was found '
                                    '(n/a in TTM Table 3)'),
}
DKD_CIFAR100 = {  # mdistiller cfg.py CFG.DKD: CE_WEIGHT 1.0, ALPHA 1.0, BETA 8.0, T 4.0, WARMUP 20
    'ce_weight': P(1.0, 'CE_WEIGHT 1.0 (mdistiller cfg.py)'),
    'alpha': P(1.0, 'TCKD weight ALPHA 1.0 (mdistiller cfg.py)'),
    'temperature': P(4.0, 'T 4.0 (mdistiller cfg.py)'),
    'standardize': P(False),
    'warmup_epochs': P(20, 'linear warm-up of the DKD term, WARMUP 20 (mdistiller cfg.py)'),
}
DKD_AT_CIFAR100 = {**DKD_CIFAR100, **{
    'ce_weight': P(1.0, 'CE_WEIGHT 1.0 as in DKD (the ATKD weights for DKD are not published)'),
    'temperature': P('max_logit', 'per-sample max-logit temperature (ATKD distiller_zoo/dkd.py)'),
    'standardize': P(True, 'z-score logits first, as ATKD does'),
}}
DKD_AT_NOTE = ("ATKD runs DKD as --distill dkd --logit_stand --mlogit_temp with a CE weight (-r) and a DKD weight "
               '(-b) it does not publish: CE 1 and DKD weight 1 are DKD\'s own (inferred), alpha and beta '
               "mdistiller's for the pair. The logit-standardisation fork's DKD+LS used base temperature 2 with alpha "
               'and beta multiplied by its KD weight: another recipe.')


def _dkd_beta(student: str, teacher: str, config: Optional[str], beta: Optional[float]) -> Param:
    if config is None:
        return DKD_INFERRED_BETA[(student, teacher)]
    where = f'mdistiller configs/cifar100/dkd/{config}'
    if beta is None:
        return P(8.0, f"NCKD weight: mdistiller's default BETA 8.0 (cfg.py), which {where} keeps")
    return P(beta, f'NCKD weight BETA {beta} ({where})')


def dkd_rows(cifar: CifarRow) -> List[Experiment]:
    """DKD and DKD + max-logit temperature (``dkd_at``) for the 13 pairs."""
    rows = []
    for student, teacher, config, beta, top1, table in CIFAR100_DKD:
        beta_param = _dkd_beta(student, teacher, config, beta)
        reference = DKD_OTHER_REFERENCES.get((student, teacher)) or Reference(
            TTM_PAPER, table, top1, 'DKD row (Zhao et al., CVPR 2022)')
        notes = () if config else ('mdistiller has no config for this pair: beta is inferred (see its comment).',)
        rows.append(cifar('dkd', student, teacher, {**DKD_CIFAR100, 'beta': beta_param}, reference, notes=notes))
        command = (f'  --distill dkd --logit_stand --mlogit_temp --dkd_alpha 1 --dkd_beta {int(beta_param.value)} '
                   '-r 1 -a 0 -b 1')
        rows.append(cifar('dkd_at', student, teacher, {**DKD_AT_CIFAR100, 'beta': beta_param}, ATKD_NO_TABLES,
                          notes=notes + (DKD_AT_NOTE, "The max-logit code's run (train_student.py), weights inferred:",
                                         command)))
    return rows


# ------------------------------------------------------------------------------------------------------------
# MLKD
# ------------------------------------------------------------------------------------------------------------
# student, teacher, MLKD top-1 as the LS README quotes it (None: not quoted), the MLKD code's (epochs, lr) for the
# pair (configs/cifar100/ours; None: no config), MLKD+LS top-1 of the LS README (None: not quoted)
CIFAR100_MLKD = (
    ('wrn_16_2', 'wrn_40_2', 76.63, (240, 0.025), 76.95),
    ('wrn_40_1', 'wrn_40_2', 75.35, (240, 0.025), 75.56),
    ('resnet20', 'resnet56', 72.19, (240, 0.025), 72.33),
    ('resnet20', 'resnet110', 71.89, None, 72.27),
    ('resnet32', 'resnet110', 74.11, (240, 0.025), 74.32),
    ('resnet8x4', 'resnet32x4', 77.08, (240, 0.025), 78.28),
    ('vgg8', 'vgg13', 75.18, (240, 0.025), 75.22),
    ('MobileNetV2', 'vgg13', 70.57, (480, 0.01), 70.94),
    ('MobileNetV2', 'ResNet50', 71.04, (480, 0.01), 71.19),
    ('vgg8', 'ResNet50', None, None, None),
    ('ShuffleV1', 'resnet32x4', None, (960, 0.01), None),
    ('ShuffleV2', 'resnet32x4', 78.44, (960, 0.01), 78.76),
    ('ShuffleV1', 'wrn_40_2', None, (480, 0.01), None),
)
# The LS fork's MLKD+LS logs, named mlkd,TEACHER,STUDENT,BASE_T,KD_WEIGHT: the weight of MLKD per pair.
LS_MLKD_LOGS = {
    ('wrn_16_2', 'wrn_40_2'): 'mlkd,wrn_40_2,wrn_16_2,2,9', ('wrn_40_1', 'wrn_40_2'): 'mlkd,wrn_40_2,wrn_40_1,2,9',
    ('resnet20', 'resnet110'): 'mlkd,res110,res20,2,9', ('resnet32', 'resnet110'): 'mlkd,res110,res32,2,9',
    ('resnet8x4', 'resnet32x4'): 'mlkd,resnet32x4,resnet8x4,2,9', ('vgg8', 'vgg13'): 'mlkd,vgg13,vgg8,2,6',
    ('MobileNetV2', 'vgg13'): 'mlkd,vgg13,MobileNetV2,2,6', ('MobileNetV2', 'ResNet50'): 'mlkd,res50,mv2,2,9',
    ('ShuffleV2', 'resnet32x4'): 'mlkd,resnet32x4,ShuffleV2,2,6',
}
MLKD_SHARED = {
    'num_ops': P(2, "the authors' strong view: RandAugment(2, 10) with Cutout (ATKD dataset/cifar100.py)"),
    'code_faithful': P(True, "the authors' MLKD.forward, quirks included (docs/mlkd.md)"),
}
MLKD_CIFAR100 = {**MLKD_SHARED,  # MLKD cfg.py: CFG.KD.TEMPERATURE 4, CFG.KD.LOSS.CE_WEIGHT 0.1, KD_WEIGHT 0.9
                 'ce_weight': P(0.1, 'on each view: CE_WEIGHT 0.1 (MLKD cfg.py)'),
                 'temperature': P(4.0, 'T 4 (MLKD cfg.py; the fixed 2, 3, 5, 6 are inside the loss)'),
                 'standardize': P(False),
                 'weight': P(0.9, 'KD_WEIGHT 0.9 on every MLKD term (MLKD cfg.py)')}
MLKD_AT_CIFAR100 = {**MLKD_SHARED,  # ATKD --logit_stand --mlogit_temp; weights of the LS fork (inferred)
                    'ce_weight': P(0.1, 'on each view: CE_WEIGHT 0.1 of the LS fork (cfg.py); inferred for the '
                                        'max-logit temperature'),
                    'temperature': P('max_logit', 'per view and sample (ATKD --mlogit_temp); MLKD\'s fixed 2, 3, 5, 6 '
                                                  'stay'),
                    'standardize': P(True, 'z-score logits first (ATKD --logit_stand)')}
MLKD_RECIPE_NOTE = ("lr 0.05 (0.01 for MobileNetV2 and ShuffleNets) and 240 epochs, as the max-logit code runs MLKD "
                    '(ATKD train_student.py has no MLKD-specific setting); the MLKD code itself used lr 0.025 for the '
                    'same-architecture pairs and 480 or 960 epochs for others.')
MLKD_AT_NOTE = ('ATKD publishes no MLKD weights: those of MLKD with logit standardisation (the LS fork, base '
                'temperature 2) are used with the max-logit temperature, inferred.')
LS_EPOCHS = ("the logit-standardisation fork's MLKD runs used 480 epochs (960 for resnet32x4 -> ShuffleV1/V2), "
             'not comparable with this 240-epoch run')


def _mlkd_reference(top1: Optional[float], recipe: Optional[Tuple[int, float]]) -> Reference:
    """MLKD's number as the LS README quotes it, with what the MLKD code's recipe for the pair was."""
    if top1 is None:
        return Reference('MLKD (CVPR 2023)', 'not retrieved', None, note=f'{LS_README} quotes no MLKD number for '
                         "this pair and the MLKD paper's tables could not be read")
    if recipe is None:
        note = 'the MLKD code has no config for this pair: the recipe of the number is unknown'
    elif recipe[0] == 240:
        note = (f'the MLKD code trains this pair for 240 epochs at lr {recipe[1]}; this config runs lr 0.05, as the '
                'max-logit code does')
    else:
        note = f'the MLKD code trains this pair for {recipe[0]} epochs: not comparable with this 240-epoch run'
    return Reference('MLKD (CVPR 2023)', f'as quoted by {LS_README}', top1, 'MLKD row', note=note)


def _mlkd_at_reference(ls_top1: Optional[float]) -> Reference:
    known = f'MLKD+LS reached {ls_top1:.2f} in {LS_README}, but {LS_EPOCHS}' if ls_top1 is not None else \
        f'{LS_README} has no MLKD+LS number for this pair; {LS_EPOCHS}'
    return Reference(ATKD_PAPER, 'not retrievable', None, note=f'the ATKD paper tables could not be retrieved; {known}')


def _mlkd_at_weight(student: str, teacher: str) -> Param:
    log = LS_MLKD_LOGS.get((student, teacher))
    if log is None:
        return P(9.0, 'inferred: the LS default --kd-weight 9 (no MLKD+LS log for this pair)')
    return P(float(log.split(',')[-1]), f'MLKD+LS weight (LS log {log}); inferred for the max-logit temperature')


def mlkd_rows(cifar: CifarRow) -> List[Experiment]:
    """MLKD at T = 4 and MLKD + max-logit temperature (``mlkd_at``) for the 13 pairs."""
    rows = []
    for student, teacher, top1, recipe, ls_top1 in CIFAR100_MLKD:
        rows.append(cifar('mlkd', student, teacher, MLKD_CIFAR100, _mlkd_reference(top1, recipe), notes=(
            MLKD_RECIPE_NOTE, "The max-logit code's run (train_student.py):",
            '  --distill mlkd --kd_T 4 -r 0.1 -a 0 -b 0.9')))
        weight = _mlkd_at_weight(student, teacher)
        inferred = () if (student, teacher) in LS_MLKD_LOGS else (
            'No MLKD+LS log for this pair: the MLKD weight 9 is the LS default, inferred.',)
        rows.append(cifar('mlkd_at', student, teacher, {**MLKD_AT_CIFAR100, 'weight': weight},
                          _mlkd_at_reference(ls_top1), notes=(MLKD_AT_NOTE,) + inferred + (
                              MLKD_RECIPE_NOTE, "The max-logit code's run (train_student.py), weights inferred:",
                              f'  --distill mlkd --logit_stand --mlogit_temp -r 0.1 -a 0 -b {weight.value:g}')))
    return rows
