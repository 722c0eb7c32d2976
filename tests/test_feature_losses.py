"""WTTM+CRD and WTTM+ITRD: torchdistill's CRDLoss and the plugin's ITRDLoss against slow references, the trainable
embedding heads (PenultimateEmbedding), and a few DistillationBox steps from the documented configs."""
import copy
import inspect
import math
import re
import textwrap

import pytest
import torch
import yaml
from torchdistill.core.distillation import get_distillation_box
from torchdistill.datasets.wrapper import CRDDatasetWrapper
from torchdistill.losses.mid_level import CRDLoss
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss
from torchdistill.models.registry import AUXILIARY_MODEL_WRAPPER_DICT, get_model

import slow_reference_features as slow
import ttm_torchdistill  # noqa: F401
import ttm_torchdistill.feature_functional as FF
from conftest import REPO_ROOT
from ttm_torchdistill import _registry
from ttm_torchdistill.feature_losses import EmbeddingHead, ITRDLoss, PenultimateEmbedding
from ttm_torchdistill.run.config.loading import load_config

pytestmark = pytest.mark.usefixtures('one_torch_thread')

SHIPPED = REPO_ROOT / 'configs' / 'cifar100'


def _generator(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------

def test_registers_itrd_loss_and_the_embedding_wrapper():
    assert MIDDLE_LEVEL_LOSS_DICT['ITRDLoss'] is ITRDLoss
    assert AUXILIARY_MODEL_WRAPPER_DICT['PenultimateEmbedding'] is PenultimateEmbedding
    # CRD is torchdistill's own loss, left in place
    assert MIDDLE_LEVEL_LOSS_DICT['CRDLoss'] is CRDLoss


def test_registering_a_taken_wrapper_key_is_refused():
    with pytest.raises(KeyError, match=r"auxiliary model wrapper key 'Linear4CRD' is already registered to "
                                       r"torchdistill\.models\.wrapper\.Linear4CRD"):
        _registry.auxiliary_model_wrapper('Linear4CRD')(PenultimateEmbedding)


def _yaml_examples(obj):
    blocks = re.findall(r'\.\. code-block:: yaml\n\n(.*?)(?:\n\s*\n|\Z)', inspect.getdoc(obj), flags=re.S)
    return [yaml.safe_load(textwrap.dedent(block)) for block in blocks]


def test_itrd_docstring_follows_house_order():
    doc = inspect.getdoc(ITRDLoss)
    positions = [doc.index(part) for part in ('.. math::', 'BMVC 2022', 'https://github.com/roymiles/ITRD',
                                               '.. warning::', ':param lambda_corr:', '.. code-block:: yaml')]
    assert positions == sorted(positions)


def test_itrd_docstring_yaml_example_builds_and_runs():
    (example,) = _yaml_examples(ITRDLoss)
    (term,) = example.values()
    criterion = get_mid_level_loss(term['criterion'])
    g = _generator(0)
    raw = torch.randn(6, 8, generator=g, requires_grad=True)
    student = {'features': {'output': raw}, 'embed': {'output': raw @ torch.randn(8, 5, generator=g)}}
    teacher_features = torch.randn(6, 5, generator=g, requires_grad=True)
    value = term['weight'] * criterion(student, {'fc': {'input': teacher_features}})
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert raw.grad is not None and teacher_features.grad is None


def test_wrapper_docstring_yaml_example_builds():
    (example,) = _yaml_examples(PenultimateEmbedding)
    wrapper = example['student']['auxiliary_model_wrapper']
    built = AUXILIARY_MODEL_WRAPPER_DICT[wrapper['key']](student_model=get_model('cifar_resnet8', num_classes=10),
                                                         **wrapper['kwargs'])
    assert built.embed.linear.in_features == 64 and built.embed.linear.out_features == 128


# ----------------------------------------------------------------------------------------------------------------
# CRD: torchdistill's CRDLoss against the slow reference (fixed memory banks and injected negatives)
# ----------------------------------------------------------------------------------------------------------------

D, N_DATA, K, T_NCE, MOMENTUM = 4, 10, 3, 0.07, 0.5


def _unit_rows(n, d, g):
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _crd(seed=0):
    loss = CRDLoss('embed', 'supp', 'embed', input_size=D, output_size=N_DATA, num_negative_samples=K,
                   num_samples=N_DATA, temperature=T_NCE, momentum=MOMENTUM, eps=1e-7).double()
    g = _generator(seed)
    loss.memory_v1.copy_(_unit_rows(N_DATA, D, g))
    loss.memory_v2.copy_(_unit_rows(N_DATA, D, g))
    return loss


def _crd_batch(seed, idx=(2, 5, 7)):
    g = _generator(100 + seed)
    e_s = _unit_rows(len(idx), D, g).requires_grad_()
    e_t = _unit_rows(len(idx), D, g).requires_grad_()
    idx = torch.tensor(idx)
    negatives = torch.randint(0, N_DATA, (len(idx), K), generator=g)
    contrast_idx = torch.cat([idx[:, None], negatives], dim=1)
    return e_s, e_t, idx, contrast_idx


def _crd_call(loss, e_s, e_t, idx, contrast_idx):
    student = {'embed': {'output': e_s}, 'supp': {'input': {'pos_idx': idx, 'contrast_idx': contrast_idx}}}
    value = loss(student, {'embed': {'output': e_t}})
    assert value.shape == (1,)  # as RepDistiller's ContrastLoss: sum(0) over a (B, 1) tensor
    return value.reshape(())


# CRDLoss keeps T in a float32 buffer, as RepDistiller's ContrastMemory does: both use 0.07 rounded to float32.
T_STORED = float(torch.tensor(T_NCE, dtype=torch.float32))


def _crd_reference(loss_module, e_s, e_t, contrast_idx, z_s=None, z_t=None):
    e_s2, e_t2 = e_s.detach().clone().requires_grad_(), e_t.detach().clone().requires_grad_()
    value, z_s, z_t = slow.crd(e_s2, e_t2, loss_module.memory_v1.clone(), loss_module.memory_v2.clone(), contrast_idx,
                               T_STORED, N_DATA, z_s, z_t)
    grads = torch.autograd.grad(value, (e_s2, e_t2))
    return value, grads, z_s, z_t


def test_crd_first_batch_matches_slow_reference():
    loss = _crd()
    e_s, e_t, idx, contrast_idx = _crd_batch(0)
    expected, expected_grads, z_s, z_t = _crd_reference(loss, e_s, e_t, contrast_idx)
    value = _crd_call(loss, e_s, e_t, idx, contrast_idx)
    grads = torch.autograd.grad(value, (e_s, e_t))
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    for g, eg in zip(grads, expected_grads):
        torch.testing.assert_close(g, eg, rtol=1e-9, atol=1e-12)
    # the contrast normalisers are estimated once, from this first batch
    assert loss.params[2].item() == pytest.approx(z_s, rel=1e-12)
    assert loss.params[3].item() == pytest.approx(z_t, rel=1e-12)


def test_crd_later_batches_keep_the_first_normaliser_and_see_the_updated_memory():
    loss = _crd()
    first = _crd_batch(0)
    _crd_call(loss, *first)
    z_s, z_t = loss.params[2].item(), loss.params[3].item()
    e_s, e_t, idx, contrast_idx = _crd_batch(1, idx=(0, 5, 9))  # row 5 was updated by the first batch
    expected, expected_grads, _, _ = _crd_reference(loss, e_s, e_t, contrast_idx, z_s, z_t)
    value = _crd_call(loss, e_s, e_t, idx, contrast_idx)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    for g, eg in zip(torch.autograd.grad(value, (e_s, e_t)), expected_grads):
        torch.testing.assert_close(g, eg, rtol=1e-9, atol=1e-12)
    assert (loss.params[2].item(), loss.params[3].item()) == (z_s, z_t)


def test_crd_memory_update_rule():
    loss = _crd()
    e_s, e_t, idx, contrast_idx = _crd_batch(0)
    before_s, before_t = loss.memory_v1.clone(), loss.memory_v2.clone()
    _crd_call(loss, e_s, e_t, idx, contrast_idx)
    # memory_v1 holds student embeddings, memory_v2 teacher embeddings (RepDistiller's ContrastMemory)
    torch.testing.assert_close(loss.memory_v1, slow.crd_memory_update(before_s, e_s, idx, MOMENTUM), rtol=1e-12,
                               atol=1e-14)
    torch.testing.assert_close(loss.memory_v2, slow.crd_memory_update(before_t, e_t, idx, MOMENTUM), rtol=1e-12,
                               atol=1e-14)
    untouched = [i for i in range(N_DATA) if i not in idx.tolist()]
    assert torch.equal(loss.memory_v1[untouched], before_s[untouched])
    torch.testing.assert_close(loss.memory_v1.norm(dim=1)[idx], torch.ones(3, dtype=torch.float64))


def test_crd_gradcheck():
    prepared = _crd()
    _crd_call(prepared, *_crd_batch(5))  # sets the normalisers
    memory_v1, memory_v2 = prepared.memory_v1.clone(), prepared.memory_v2.clone()
    z = prepared.params[2:4].detach().clone()
    e_s, e_t, idx, contrast_idx = _crd_batch(0)

    def fn(s, t):  # a fresh loss in the same state for every call (a call updates the memory)
        loss = _crd()
        loss.memory_v1.copy_(memory_v1)
        loss.memory_v2.copy_(memory_v2)
        loss.params[2:4] = z
        return _crd_call(loss, s, t, idx, contrast_idx)

    assert torch.autograd.gradcheck(fn, (e_s, e_t))


def test_crd_needs_the_negatives_from_the_dataset_wrapper():
    # torchdistill 1.1.5's own sampler (draw) refers to a missing attribute, so contrast_idx must come from
    # CRDDatasetWrapper, as RepDistiller's CIFAR100InstanceSample provides it.
    loss = _crd()
    e_s, e_t, idx, _ = _crd_batch(0)
    student = {'embed': {'output': e_s}, 'supp': {'input': {'pos_idx': idx}}}
    with pytest.raises(AttributeError, match="has no attribute 'prob'"):
        loss(student, {'embed': {'output': e_t}})


class SyntheticCIFAR(torch.utils.data.Dataset):
    """A few random 3x32x32 images with CIFAR-100's ``classes`` and ``targets`` (CRDDatasetWrapper reads them)."""

    def __init__(self, n=8, num_used_classes=4, seed=0):
        g = _generator(seed)
        self.images = torch.randn(n, 3, 32, 32, generator=g)
        self.targets = [i % num_used_classes for i in range(n)]
        self.classes = [str(c) for c in range(100)]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]


@pytest.mark.parametrize('mode', ['exact', 'relax'])
def test_crd_dataset_wrapper_samples_like_repdistiller(mode):
    dataset = SyntheticCIFAR(n=12)
    wrapped = CRDDatasetWrapper(dataset, num_negative_samples=5, mode=mode, ratio=1.0)
    for index in range(len(dataset)):
        _, target, supp = wrapped[index]
        contrast = supp['contrast_idx']
        assert supp['pos_idx'] == index  # the memory row updated is the sample's own (RepDistiller's `index`)
        assert contrast.shape == (6,)
        if mode == 'exact':
            assert contrast[0] == index
        else:
            assert dataset.targets[contrast[0]] == target
        assert all(dataset.targets[j] != target for j in contrast[1:])  # negatives from other classes only


# ----------------------------------------------------------------------------------------------------------------
# ITRD
# ----------------------------------------------------------------------------------------------------------------

def _features(n, d, seed, scale=1.0):
    return (torch.randn(n, d, generator=_generator(seed), dtype=torch.float64) * scale).requires_grad_()


@pytest.mark.parametrize('alpha', [1.01, 1.5, 2.0])
@pytest.mark.parametrize('n, d', [(5, 3), (8, 6)])
def test_itrd_correlation_matches_slow_reference(alpha, n, d):
    s, t = _features(n, d, 0), _features(n, d, 1, scale=3.0).detach()
    value = FF.itrd_correlation_loss(s, t, alpha)
    (grad,) = torch.autograd.grad(value, s)
    s2 = s.detach().clone().requires_grad_()
    expected = slow.itrd_correlation(s2, t, alpha)
    (expected_grad,) = torch.autograd.grad(expected, s2)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize('ds, dt', [(4, 4), (3, 7)])
def test_itrd_mutual_matches_slow_reference(ds, dt):
    s, t = _features(6, ds, 2), _features(6, dt, 3).detach()
    value = FF.itrd_mutual_information_loss(s, t)
    (grad,) = torch.autograd.grad(value, s)
    s2 = s.detach().clone().requires_grad_()
    expected = slow.itrd_mutual(s2, t)
    (expected_grad,) = torch.autograd.grad(expected, s2)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-13)


def _itrd_io(raw, embedded, teacher):
    return {'features': {'output': raw}, 'embed': {'output': embedded}}, {'fc': {'input': teacher}}


@pytest.mark.parametrize('raw_width, uses_raw', [(5, True), (7, False)])
def test_itrd_adapter_follows_the_authors_embedding_rule(raw_width, uses_raw):
    # the authors' code embeds the student for the mutual term only when the widths differ
    raw, embedded, teacher = _features(6, raw_width, 4), _features(6, 5, 5), _features(6, 5, 6).detach()
    criterion = get_mid_level_loss({'key': 'ITRDLoss', 'kwargs': {'lambda_corr': 2.0, 'lambda_mutual': 0.7,
                                                                  'alpha_it': 1.5, 'teacher_module_path': 'fc'}})
    value = criterion(*_itrd_io(raw, embedded, teacher))
    grads = torch.autograd.grad(value, (raw, embedded), allow_unused=True)
    r2, e2 = raw.detach().clone().requires_grad_(), embedded.detach().clone().requires_grad_()
    expected = 2.0 * slow.itrd_correlation(e2, teacher, 1.5) + 0.7 * slow.itrd_mutual(r2 if uses_raw else e2, teacher)
    expected_grads = torch.autograd.grad(expected, (r2, e2), allow_unused=True)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    assert (grads[0] is not None) == uses_raw
    for g, eg in zip(grads, expected_grads):
        if eg is not None:
            torch.testing.assert_close(g, eg, rtol=1e-8, atol=1e-12)


def test_itrd_mutual_uses_embedding_options():
    raw, embedded, teacher = _features(6, 5, 4), _features(6, 5, 5), _features(6, 5, 6).detach()
    always = get_mid_level_loss({'key': 'ITRDLoss', 'kwargs': {'mutual_uses_embedding': True, 'lambda_corr': 0.0,
                                                               'teacher_module_path': 'fc'}})
    torch.testing.assert_close(always(*_itrd_io(raw, embedded, teacher)), FF.itrd_mutual_information_loss(embedded,
                                                                                                          teacher))
    never = get_mid_level_loss({'key': 'ITRDLoss', 'kwargs': {'mutual_uses_embedding': False, 'lambda_corr': 0.0,
                                                              'teacher_module_path': 'fc'}})
    torch.testing.assert_close(never(*_itrd_io(raw, embedded, teacher)), FF.itrd_mutual_information_loss(raw, teacher))
    with pytest.raises(ValueError, match=r'mutual_uses_embedding=False needs equal feature widths, got student 7 and '
                                         r'teacher 5'):
        never(*_itrd_io(_features(6, 7, 4), embedded, teacher))


def test_itrd_gradcheck():
    s, t = _features(5, 4, 7), _features(5, 4, 8).detach()
    assert torch.autograd.gradcheck(lambda x: FF.itrd_correlation_loss(x, t, 1.01), (s,))
    assert torch.autograd.gradcheck(lambda x: FF.itrd_mutual_information_loss(x, t), (s,))
    raw, embedded = _features(5, 6, 9), _features(5, 4, 10)
    criterion = ITRDLoss(teacher_module_path='fc')
    assert torch.autograd.gradcheck(lambda r, e: criterion(*_itrd_io(r, e, t)), (raw, embedded))


def test_itrd_teacher_gets_no_gradient():
    raw, embedded = _features(6, 5, 4), _features(6, 5, 5)
    teacher = _features(6, 5, 6)
    ITRDLoss(teacher_module_path='fc')(*_itrd_io(raw, embedded, teacher)).backward()
    assert teacher.grad is None and raw.grad is not None and embedded.grad is not None


def test_itrd_zero_mutual_weight_needs_no_raw_features():
    embedded, teacher = _features(6, 5, 5), _features(6, 5, 6).detach()
    criterion = ITRDLoss(lambda_mutual=0.0, alpha_it=1.01, teacher_module_path='fc')
    value = criterion({'embed': {'output': embedded}}, {'fc': {'input': teacher}})
    torch.testing.assert_close(value, 2.0 * FF.itrd_correlation_loss(embedded, teacher, 1.01))


def test_itrd_batch_of_one_is_refused():
    with pytest.raises(ValueError, match=r'ITRD needs at least 2 samples per batch \(batch statistics\), got 1'):
        ITRDLoss(teacher_module_path='fc')(*_itrd_io(_features(1, 5, 0), _features(1, 5, 1), _features(1, 5, 2)))


def test_itrd_embedding_width_must_match_the_teacher():
    with pytest.raises(ValueError, match=r"the embedded student features must have the teacher feature width: got "
                                         r"\(6, 4\) and \(6, 5\) \(set the embedding head's out_features to the "
                                         r"teacher width 5\)"):
        ITRDLoss(teacher_module_path='fc')(*_itrd_io(_features(6, 5, 0), _features(6, 4, 1), _features(6, 5, 2)))


def test_itrd_constant_teacher_column_is_nan_with_zero_eps_and_finite_with_eps():
    raw, embedded, teacher = _features(6, 5, 4), _features(6, 5, 5), _features(6, 5, 6).detach().clone()
    teacher[:, 2] = 0.0  # a dead ReLU channel over the whole batch
    criterion = ITRDLoss(teacher_module_path='fc')
    # the authors' formula gives NaN there, read by the runner's non-finite check (no host read per step here)
    assert torch.isnan(criterion(*_itrd_io(raw, embedded, teacher)))
    assert torch.isnan(FF.itrd_correlation_loss(embedded, teacher, 1.5))
    assert 'set eps > 0' in criterion.nonfinite_hint()
    value = ITRDLoss(eps=1e-6, teacher_module_path='fc')(*_itrd_io(raw, embedded, teacher))
    assert torch.isfinite(value)
    assert ITRDLoss(eps=1e-6, teacher_module_path='fc').nonfinite_hint() == ''


def test_itrd_computes_in_float32_under_bf16_autocast():
    """Half-precision features (as from a bf16 autocast forward) give the float32 loss of the same values."""
    raw, embedded, teacher = (_features(8, 5, seed).detach().float().to(torch.bfloat16) for seed in (4, 5, 6))
    criterion = ITRDLoss(alpha_it=1.5, teacher_module_path='fc')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = criterion(*_itrd_io(raw, embedded, teacher))
    expected = criterion(*_itrd_io(raw.float(), embedded.float(), teacher.float()))
    assert value.dtype == torch.float32
    assert torch.equal(value, expected)
    # the bf16 arithmetic that autocast would otherwise apply to the matrix products is not bit-identical
    with torch.autocast('cpu', dtype=torch.bfloat16):
        in_bf16 = FF._itrd(embedded, raw, teacher, 2.0, 1.0, 1.5, 0.0)
    assert in_bf16.dtype == torch.bfloat16 and not torch.equal(in_bf16.float(), expected)


def test_itrd_missing_hook_is_reported():
    criterion = ITRDLoss(teacher_module_path='linear')
    with pytest.raises(KeyError, match=r"the teacher io_dict has no 'input' for module path 'linear'; .*"
                                       r"forward_hook entries of the teacher \(teacher features\)"):
        criterion(*_itrd_io(_features(4, 5, 0), _features(4, 5, 1), _features(4, 5, 2)))


def test_functional_rejects_bad_feature_tensors():
    with pytest.raises(ValueError, match=r'student features must have shape \(N, D\) \(flattened penultimate '
                                         r'features\), got \(4, 5, 1\)'):
        FF.itrd_mutual_information_loss(torch.randn(4, 5, 1), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r'student and teacher features must have the same batch size, got 4 and 3'):
        FF.itrd_correlation_loss(torch.randn(4, 5), torch.randn(3, 5), 1.5)
    with pytest.raises(TypeError, match=r'teacher features must be a floating-point tensor, got torch\.int64'):
        FF.itrd_mutual_information_loss(torch.randn(4, 5), torch.ones(4, 5, dtype=torch.long))


# ----------------------------------------------------------------------------------------------------------------
# PenultimateEmbedding: the trainable heads
# ----------------------------------------------------------------------------------------------------------------

PENULTIMATE = [('cifar_resnet8x4', 'fc', 256), ('cifar_wrn_16_2', 'fc', 128), ('cifar_vgg8', 'classifier', 512),
               ('cifar_MobileNetV2', 'classifier', 1280), ('cifar_ShuffleV1', 'linear', 960),
               ('cifar_ShuffleV2', 'linear', 1024), ('cifar_ResNet50', 'linear', 2048)]


@pytest.mark.parametrize('key, path, width', PENULTIMATE)
def test_heads_read_the_pooled_features_that_feed_the_classifier(key, path, width):
    model = get_model(key, num_classes=100).eval()
    wrapper = PenultimateEmbedding(path, 16, student_model=model)
    assert wrapper.embed.linear.in_features == width  # inferred from the classifier
    seen = {}
    wrapper.features.register_forward_hook(lambda m, i, o: seen.__setitem__('features', o))
    wrapper.embed.register_forward_hook(lambda m, i, o: seen.__setitem__('embed', o))
    x = torch.randn(2, 3, 32, 32, generator=_generator(0))
    with torch.no_grad():
        logits = wrapper(x)
        classifier = model.get_submodule(path)
        torch.testing.assert_close(classifier(seen['features']), logits)  # exactly the classifier's input
        torch.testing.assert_close(logits, model(x))
    assert seen['features'].shape == (2, width)
    torch.testing.assert_close(seen['embed'].norm(dim=1), torch.ones(2))


def test_itrd_head_is_a_plain_linear_map_and_crd_head_normalises():
    g = _generator(1)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    plain = EmbeddingHead(6, 4, normalize=False).double()
    torch.testing.assert_close(plain(x), plain.linear(x))
    crd = EmbeddingHead(6, 4).double()
    expected = torch.stack([v / math.sqrt(sum(float(c) ** 2 for c in v)) for v in crd.linear(x).detach()])
    torch.testing.assert_close(crd(x).detach(), expected)
    assert torch.autograd.gradcheck(crd, (x,))


def test_teacher_head_is_trained_on_features_computed_without_gradient():
    teacher = get_model('cifar_resnet8', num_classes=10)
    wrapper = PenultimateEmbedding('fc', 8, teacher_model=teacher)
    out = {}
    wrapper.embed.register_forward_hook(lambda m, i, o: out.__setitem__('embed', o))
    logits = wrapper(torch.randn(2, 3, 32, 32))
    assert not logits.requires_grad
    out['embed'].sum().backward()
    assert wrapper.embed.linear.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_frozen_head_is_refused_unless_intended():
    wrapper = PenultimateEmbedding('fc', 8, teacher_model=get_model('cifar_resnet8', num_classes=10))
    for p in wrapper.parameters():
        p.requires_grad_(False)  # what train.teacher.requires_grad: False does
    with pytest.raises(RuntimeError, match=r"embedding head of PenultimateEmbedding is frozen.*requires_grad: True "
                                           r"and frozen_modules: \['model'\]"):
        wrapper(torch.randn(2, 3, 32, 32))
    wrapper.trainable = False
    wrapper(torch.randn(2, 3, 32, 32))


def test_supp_dict_reaches_the_supp_module_and_the_bare_model_keeps_nothing():
    model = get_model('cifar_resnet8', num_classes=10)
    wrapper = PenultimateEmbedding('fc', 8, student_model=model)
    seen = {}
    wrapper.supp.register_forward_hook(lambda m, i, o: seen.__setitem__('supp', i[0]))
    supp = {'pos_idx': torch.tensor([1, 2])}
    wrapper(torch.randn(2, 3, 32, 32), supp)
    assert seen['supp'] is supp
    model(torch.randn(2, 3, 32, 32))  # e.g. validation of the unwrapped student
    assert wrapper._captured is None


def test_output_io_needs_in_features():
    model = get_model('cifar_resnet8', num_classes=10)
    with pytest.raises(ValueError, match=r"in_features is required: 'avgpool' \(AvgPool2d, output\) does not tell "
                                         r"the feature width"):
        PenultimateEmbedding('avgpool', 8, input_module_io='output', student_model=model)
    wrapper = PenultimateEmbedding('avgpool', 8, in_features=64, input_module_io='output', student_model=model)
    assert wrapper(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize('kwargs, error, message', [
    ({'input_module_path': 'head'}, ValueError, r"input_module_path 'head' is not a module of the wrapped "
                                                r"CifarResNet; its top-level modules are \['conv1'"),
    ({'input_module_path': 3}, TypeError, r'input_module_path must be a non-empty string, got 3'),
    ({'input_module_io': 'in'}, ValueError, r"input_module_io must be 'input' or 'output', got 'in'"),
    ({'out_features': 0}, ValueError, r'out_features must be a positive integer, got 0'),
    ({'out_features': 12.0}, TypeError, r'out_features must be a positive integer, got 12\.0 \(float\)'),
    ({'normalize': 'yes'}, TypeError, r"normalize must be True or False, got 'yes'"),
    ({'trainable': 1}, TypeError, r'trainable must be True or False, got 1'),
    ({'linear_kwargs': {}}, TypeError, r"^PenultimateEmbedding has no argument 'linear_kwargs'; "
                                      r"PenultimateEmbedding accepts: input_module_path \(required\)"),
])
def test_wrapper_bad_arguments(kwargs, error, message):
    arguments = dict({'input_module_path': 'fc', 'out_features': 8,
                      'student_model': get_model('cifar_resnet8', num_classes=10)}, **kwargs)
    with pytest.raises(error, match=message):
        PenultimateEmbedding(**arguments)


def test_wrapper_wraps_exactly_one_model():
    model = get_model('cifar_resnet8', num_classes=10)
    with pytest.raises(ValueError, match=r'PenultimateEmbedding wraps exactly one model: give teacher_model or '
                                         r'student_model'):
        PenultimateEmbedding('fc', 8)
    with pytest.raises(ValueError, match=r'wraps exactly one model'):
        PenultimateEmbedding('fc', 8, teacher_model=model, student_model=model)


# ----------------------------------------------------------------------------------------------------------------
# DistillationBox from the documented configs
# ----------------------------------------------------------------------------------------------------------------

CONFIGS = ['wttm_crd', 'wttm_itrd']  # the shipped resnet8x4_from_resnet32x4 config of each method


def _tiny_train_config(name, n_data):
    """The shipped config without its datasets (the runner's loader builds none), shrunk to a few steps."""
    config = load_config(str(SHIPPED / name / 'resnet8x4_from_resnet32x4.yaml')).config
    train = config['train']
    for loader in ('train_data_loader', 'val_data_loader'):
        train[loader]['kwargs'].update(batch_size=4, num_workers=0, pin_memory=False)
        train[loader]['kwargs'].pop('persistent_workers', None)
    for role in ('teacher', 'student'):
        train[role]['wrapper'] = None  # one CPU process
    crd = train['criterion']['kwargs']['sub_terms'].get('crd')
    if crd is not None:  # a small memory bank and 3 negatives per sample, via kwargs
        train['train_data_loader']['dataset_wrapper']['kwargs']['num_negative_samples'] = 3
        crd['criterion']['kwargs'].update(num_negative_samples=3, output_size=n_data, num_samples=n_data)
    return config, train


def _teacher(config):
    teacher = get_model(config['models']['teacher_model']['key'], **config['models']['teacher_model']['kwargs'])
    with torch.no_grad():  # a random teacher has dead ReLU channels; a trained one feeds ITRD live features
        teacher.layer3[-1].bn2.weight.fill_(0.1)
        teacher.layer3[-1].bn2.bias.fill_(2.0)
    return teacher


@pytest.mark.parametrize('name', CONFIGS)
def test_box_trains_the_heads_and_leaves_the_teacher_alone(name):
    torch.manual_seed(0)
    datasets = {'cifar100/train': SyntheticCIFAR(n=8), 'cifar100/test': SyntheticCIFAR(n=4, seed=1)}
    config, train = _tiny_train_config(name, len(datasets['cifar100/train']))
    teacher = _teacher(config)
    student = get_model(config['models']['student_model']['key'], **config['models']['student_model']['kwargs'])
    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    box = get_distillation_box(teacher, student, datasets, train, torch.device('cpu'), None, False, 1)

    heads = [box.student_model.embed]
    if isinstance(box.teacher_model, PenultimateEmbedding):
        heads.append(box.teacher_model.embed)
    optimized = {id(p) for group in box.optimizer.param_groups for p in group['params']}
    for head in heads:
        assert all(id(p) in optimized for p in head.parameters())
    assert not any(id(p) in optimized for p in teacher.parameters())
    heads_before = [copy.deepcopy(head.state_dict()) for head in heads]
    crd = box.criterion.term_dict.get('crd')
    memory_before = crd[0].memory_v1.clone() if crd is not None else None

    box.pre_epoch_process(epoch=0)
    steps = 0
    for sample_batch, targets, supp_dict in box.train_data_loader:
        loss = box.forward_process(sample_batch, targets, supp_dict)
        assert torch.isfinite(loss)
        box.post_forward_process(loss=loss)
        steps += 1
    assert steps == 2

    for head, before in zip(heads, heads_before):
        assert not torch.equal(head.linear.weight, before['linear.weight'])
    for key, value in teacher.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, teacher_before[key]), key
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())
    if crd is not None:
        assert not torch.equal(crd[0].memory_v1, memory_before)
        assert crd[0].params[2].item() > 0 and crd[0].params[3].item() > 0
