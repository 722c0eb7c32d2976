"""``--smoke`` fits CRD and ITRD to the synthetic data: the edits on a config copy and what the datasets offer."""
import copy

from ttm_torchdistill.run.data.synthetic import SyntheticImageDataset
from ttm_torchdistill.run.config.smoke import SMOKE_TRAIN_SAMPLES, smoke_config
from ttm_torchdistill.run.config.smoke_features import SMOKE_CRD_NEGATIVES, SMOKE_ITRD_EPS


def _feature_config():
    """A constructed config with both feature losses, as a WTTM+CRD and a WTTM+ITRD config hold them."""
    return {
        'models': {'student_model': {'key': 'cifar_resnet8x4', 'kwargs': {'num_classes': 100}, 'dst_ckpt': 's.pt'}},
        'train': {
            'num_epochs': 240,
            'train_data_loader': {
                'dataset_id': 'cifar100/train', 'kwargs': {'batch_size': 64},
                'dataset_wrapper': {'key': 'CRDDatasetWrapper',
                                    'kwargs': {'num_negative_samples': 16384, 'mode': 'exact', 'ratio': 1.0}}},
            'criterion': {'key': 'WeightedSumLoss', 'kwargs': {'sub_terms': {
                'crd': {'criterion': {'key': 'CRDLoss', 'kwargs': {
                    'output_size': 50000, 'num_samples': 50000, 'num_negative_samples': 16384, 'input_size': 128}},
                    'weight': 0.8},
                'itrd': {'criterion': {'key': 'ITRDLoss', 'kwargs': {'eps': 0.0, 'alpha_it': 1.01}},
                         'weight': 1.0}}}},
        },
    }


def test_smoke_sizes_crd_to_the_synthetic_training_set_and_keeps_the_original(tmp_path):
    original = _feature_config()
    before = copy.deepcopy(original)
    config, notes = smoke_config(original, str(tmp_path))
    assert original == before
    wrapper = config['train']['train_data_loader']['dataset_wrapper']['kwargs']
    crd = config['train']['criterion']['kwargs']['sub_terms']['crd']['criterion']['kwargs']
    assert wrapper['num_negative_samples'] == crd['num_negative_samples'] == SMOKE_CRD_NEGATIVES
    assert crd['output_size'] == crd['num_samples'] == SMOKE_TRAIN_SAMPLES
    assert crd['input_size'] == 128 and wrapper['mode'] == 'exact'
    crd_notes = [n for n in notes if 'CRDLoss' in n or 'crd' in n]
    assert any('50000' in n and '16384' in n for n in crd_notes), notes


def test_smoke_gives_itrd_an_eps_and_says_so(tmp_path):
    config, notes = smoke_config(_feature_config(), str(tmp_path))
    itrd = config['train']['criterion']['kwargs']['sub_terms']['itrd']['criterion']['kwargs']
    assert itrd['eps'] == SMOKE_ITRD_EPS and itrd['alpha_it'] == 1.01
    assert any('eps 0 -> ' in n and 'itrd' in n for n in notes), notes


def test_smoke_keeps_a_configured_itrd_eps(tmp_path):
    config = _feature_config()
    config['train']['criterion']['kwargs']['sub_terms']['itrd']['criterion']['kwargs']['eps'] = 1e-3
    smoke, notes = smoke_config(config, str(tmp_path))
    assert smoke['train']['criterion']['kwargs']['sub_terms']['itrd']['criterion']['kwargs']['eps'] == 1e-3
    assert not any('eps 0 -> ' in n for n in notes)


def test_synthetic_dataset_has_what_crd_dataset_wrapper_reads():
    from torchdistill.datasets.wrapper import CRDDatasetWrapper
    dataset = SyntheticImageDataset(SMOKE_TRAIN_SAMPLES, (32, 32), 100)
    assert len(dataset.classes) == 100 and dataset.targets == [i % 100 for i in range(SMOKE_TRAIN_SAMPLES)]
    wrapped = CRDDatasetWrapper(dataset, num_negative_samples=SMOKE_CRD_NEGATIVES, mode='exact', ratio=1.0)
    image, target, supp = wrapped[3]
    assert supp['pos_idx'] == 3 and supp['contrast_idx'][0] == 3
    negatives = supp['contrast_idx'][1:]
    assert len(negatives) == SMOKE_CRD_NEGATIVES and all(dataset.targets[i] != target for i in negatives)
    assert len(set(negatives.tolist())) == SMOKE_CRD_NEGATIVES  # enough other-class samples: no replacement
