"""Every class and model function this package registers refuses a misspelt keyword argument itself, naming the key
the user wrote, the argument and the closest valid one (driven by torchdistill's registries: a new registration is
tested without a new test)."""
import pytest

import ttm_torchdistill  # noqa: F401  (registers; imports torchdistill's registries in the order they need)
from torchdistill.datasets.registry import DATASET_WRAPPER_DICT
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss
from torchdistill.models.registry import AUXILIARY_MODEL_WRAPPER_DICT, MODEL_DICT
from ttm_torchdistill.checks.signatures import accepted_arguments

REGISTRIES = {'loss': MIDDLE_LEVEL_LOSS_DICT, 'auxiliary model wrapper': AUXILIARY_MODEL_WRAPPER_DICT,
              'dataset wrapper': DATASET_WRAPPER_DICT, 'model': MODEL_DICT}
PLUGIN = [(kind, key) for kind, registry in REGISTRIES.items() for key, obj in sorted(registry.items())
          if getattr(obj, '__module__', '').startswith('ttm_torchdistill.')]


def _misspelt(name):
    return name[:-1] + 'x' + name[-1]  # a stray letter


@pytest.mark.parametrize('kind, key', PLUGIN, ids=[key for _, key in PLUGIN])
def test_a_misspelt_keyword_names_the_key_and_the_closest_argument(kind, key):
    target = REGISTRIES[kind][key]
    accepted = accepted_arguments(target)
    first = next(name for name in accepted.names if len(name) > 3)
    others = {name: None for name in accepted.required if name != first}  # refused before they are looked at
    with pytest.raises(TypeError) as raised:
        target(**others, **{_misspelt(first): 1})
    message = str(raised.value)
    assert message.startswith(f"{key} has no argument '{_misspelt(first)}' (did you mean '{first}'?); {key} accepts: ")
    assert '__init__' not in message and '_LogitDistillationLoss' not in message


def test_through_torchdistills_registry_as_a_user_would():
    with pytest.raises(TypeError, match=r"^WTTMLoss has no argument 'temprature' \(did you mean 'temperature'\?\); "
                                        r"WTTMLoss accepts: temperature \(required\), teacher_only_max"):
        get_mid_level_loss({'key': 'WTTMLoss', 'kwargs': {'temprature': 4.0}})
    from ttm_torchdistill.losses import DKDLoss
    with pytest.raises(TypeError, match=r"^DKDLoss has no argument 'alpah' \(did you mean 'alpha'\?\)"):
        DKDLoss(alpah=1.0)
    assert PLUGIN and {kind for kind, _ in PLUGIN} == set(REGISTRIES)
