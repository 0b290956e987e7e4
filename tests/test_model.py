import torch
import torchvision

from alexbench.model import AlexNet, build_alexnet, state_dict_sha256


def test_state_dict_keys_and_shapes_match_torchvision():
    ours = AlexNet(1000).state_dict()
    theirs = torchvision.models.alexnet(weights=None).state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_outputs_identical_to_torchvision_with_same_weights():
    tv = torchvision.models.alexnet(weights=None, num_classes=10).eval()
    ours = AlexNet(10).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))
    x = torch.randn(2, 3, 64, 64)  # adaptive pooling: smaller inputs work the same way
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))


def test_seeded_build_is_deterministic_and_does_not_touch_global_rng():
    state = torch.get_rng_state()
    a, b = build_alexnet(num_classes=10, seed=3), build_alexnet(num_classes=10, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert state_dict_sha256(a) == state_dict_sha256(b)
    assert state_dict_sha256(a) != state_dict_sha256(build_alexnet(num_classes=10, seed=4))
    assert not a.training
