"""The training data pipeline's shortcuts change no numbers: augmentation is a function of
(seed, epoch, index), collating equal-size samples stacks them exactly as padding would, a
crop larger than the (scaled) image still pads images with 0 and labels with ignore, and samples
are made on one torch thread whatever the training uses."""

import torch
import torch.nn.functional as F

from fcngraph.data import Transformed, augment, normalise, pad_collate
from fcngraph.settings import DataSettings, TrainSettings


class Pairs(torch.utils.data.Dataset):
    """Seeded random images [3, H, W] in 0..1 and labels [H, W] of 4 classes."""

    def __init__(self, n=6, size=(40, 52)):
        g = torch.Generator().manual_seed(0)
        self.items = [(torch.rand(3, *size, generator=g), torch.randint(0, 4, size, generator=g)) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        image, mask = self.items[index]
        return image.clone(), mask.clone()


def reference_collate(batch, ignore):
    """The padding path for every sample, as pad_collate did before it learnt to skip it."""
    h, w = max(i.shape[1] for i, _ in batch), max(i.shape[2] for i, _ in batch)
    return (torch.stack([F.pad(i, (0, w - i.shape[2], 0, h - i.shape[1])) for i, _ in batch]),
            torch.stack([F.pad(m, (0, w - m.shape[1], 0, h - m.shape[0]), value=ignore) for _, m in batch]))


def test_augmentation_depends_on_seed_epoch_and_index_only():
    data, train = DataSettings(), TrainSettings(crop_size=32, scale_range=(0.75, 1.25), seed=3)
    a, b = Transformed(Pairs(), data, train), Transformed(Pairs(), data, train)
    for index in (0, 4):
        assert all(torch.equal(x, y) for x, y in zip(a[index], b[index]))
    first = a[2]
    a.epoch = 1
    assert not torch.equal(first[0], a[2][0])  # a new epoch draws new crops
    a.epoch = 0
    assert torch.equal(first[0], a[2][0]) and first[0].shape == (3, 32, 32)


def test_collate_of_equal_sizes_equals_padding_and_mixed_sizes_still_pad():
    same = [Pairs()[i] for i in range(4)]
    for got, want in zip(pad_collate(same, 7), reference_collate(same, 7)):
        assert torch.equal(got, want)
    mixed = [(torch.ones(3, 5 + i, 6), torch.zeros(5 + i, 6, dtype=torch.long)) for i in range(3)]
    images, masks = pad_collate(mixed, 7)
    assert images.shape == (3, 3, 7, 6) and masks.shape == (3, 7, 6)
    assert images[0, :, 5:].abs().sum() == 0 and (masks[0, 5:] == 7).all() and (masks[2] == 0).all()


def test_crop_larger_than_the_image_pads_with_zero_and_ignore():
    image, mask = torch.rand(3, 20, 30), torch.randint(0, 4, (20, 30))
    g = torch.Generator().manual_seed(0)
    out, labels = augment(image, mask, TrainSettings(crop_size=24, flip=False), 9, g)
    assert out.shape == (3, 24, 24) and (labels[20:] == 9).all() and out[:, 20:].abs().sum() == 0
    assert any(torch.equal(out[:, :20], image[:, :, left:left + 24]) for left in range(7))  # a window of it


def test_normalise_is_per_channel():
    data = DataSettings(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    image = torch.rand(3, 4, 5)
    want = (image - torch.tensor(data.mean)[:, None, None]) / torch.tensor(data.std)[:, None, None]
    assert torch.equal(normalise(image, data), want)


def test_samples_are_made_on_one_thread_and_the_setting_is_restored():
    class Spy(Pairs):
        threads: list[int] = []

        def __getitem__(self, index):
            self.threads.append(torch.get_num_threads())
            return super().__getitem__(index)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dataset = Transformed(Spy(), DataSettings(), TrainSettings(crop_size=32, scale_range=(0.75, 1.25)))
        pad_collate([dataset[0], dataset[1]])
        assert Spy.threads == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_training_and_eval_batches_pad_labels_with_the_specs_ignore_index():
    """Images of different sizes in one batch: the padding is the spec's ignore index, not 255
    (255 is a real class of a 256-class spec, and out of range for a spec that ignores -1)."""
    from types import SimpleNamespace

    from fcngraph.spec import load_spec
    from fcngraph.train import loader_settings

    spec = load_spec("specs/fcn8s-mini.json")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"ignore_index": 7})})
    run = SimpleNamespace(spec=spec, device=torch.device("cpu"))
    collate = loader_settings(run)["collate_fn"]
    small, large = Pairs(1, (10, 12))[0], Pairs(1, (14, 12))[0]
    _, masks = collate([small, large])
    assert masks.shape == (2, 14, 12)
    assert (masks[0, 10:] == 7).all() and torch.equal(masks[0, :10], small[1])
