"""Use a trained model from Python: `famevil.load(DIR)` gives a model with its image transform and
tokenizer built in, which captions and classifies images and embeds images, texts and composed queries.
`famevil.load` also opens a plain base as `--base` names it (`ViT-B-16:openai`, `local-dir:DIR`,
`hf-hub:ORG/NAME`, a transformers CLIP folder): cross-modal retrieval only, embedding as the base does.

    import famevil
    model = famevil.load("runs/demo/seed-0/student")
    model.caption(["front.jpg"])                      # ['Navy wool cardigan. ...']
    model.classify(["front.jpg"], ["Navy Cardigan. Long sleeve cardigan in navy wool."], top=3)
    model.encode_texts(["navy wool cardigan"]) @ model.encode_images(["front.jpg"]).T
    model.zero_shot(["front.jpg"], ["cardigan", "dress", "coat"], top=2)

Every call that takes a list reads and encodes it batch_size at a time. Images may be paths, PIL images or (3, H, W) tensors (uint8, or float in [0, 1]). Each call works on
what the checkpoint holds: a call whose task the model was not trained for says so in one line.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from PIL import Image

from data_specs.errors import FamevilError, FamevilWarning
from data_specs.indexes import COMPOSED_VECTORS, IMAGE_VECTORS, SIMILAR_SEARCH
from famevil.bases import WEIGHT_SUFFIXES, resolve_base
from famevil.checkpoint import load_checkpoint
from famevil.data.examples import text_tokens
from famevil.data.images import decode_image
from famevil.data.transforms import image_transform
from famevil.model.decoding import NO_REPEAT_NGRAM, generate
from famevil.model.transformers_clip import is_transformers_clip
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tasks import find_task
from famevil.tasks.base import Task
from famevil.tasks.fic import Captioning
from famevil.tasks.scr import SubcategoryRecognition
from famevil.tasks.tgir import TextGuidedRetrieval
from famevil.tasks.xmr import CrossModalRetrieval
from famevil.text.captions import as_copy, degenerate_warning
from famevil.text.labels import DEFAULT_TEMPLATES, checked_labels, checked_templates, prompts

ImageInput = str | Path | Image.Image | torch.Tensor
TEXT_SEARCH, COMPOSED_SEARCH = "text", "composed"  # the searches a catalogue index answers
Result = TypeVar("Result")
Item = TypeVar("Item")
BATCH_SIZE = 32  # images or texts read and encoded at a time: a list of any length runs in the memory of one batch


class Prediction(NamedTuple):
    label: str  # a class name from the checkpoint's vocabulary, or a zero-shot label
    probability: float


class LabelSet(NamedTuple):
    """Zero-shot labels encoded once (FashionModel.label_set), for `zero_shot` to score batch after batch."""

    labels: tuple[str, ...]
    vectors: torch.Tensor  # (labels, D): each label's prompt-ensembled, L2-normalised text embedding


def ranked(probabilities: torch.Tensor, names: Sequence[str], top: int) -> list[list[Prediction]]:
    """Per row of (N, classes) probabilities, its `top` classes, most likely first."""
    values, indices = probabilities.topk(min(top, len(names)), dim=-1)
    return [
        [Prediction(names[i], p) for i, p in zip(row_indices, row_values, strict=True)]
        for row_indices, row_values in zip(indices.tolist(), values.tolist(), strict=True)
    ]


def read_image(image: ImageInput) -> Image.Image | torch.Tensor:
    """A path read as RGB and upright, its pixel count checked before decoding (decode_image: one line
    naming the file when it is not an image or too large); PIL images and tensors as given."""
    if isinstance(image, (Image.Image, torch.Tensor)):
        return image
    return decode_image(image_file_bytes(image), str(image))


def image_file_bytes(path: str | Path) -> bytes:
    """An image file's bytes; one line naming the file when it is missing or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FamevilError(f"{path}: no such image file") from None
    except OSError as error:
        raise FamevilError(f"{path}: unreadable ({error.strerror or error})") from None


class FashionModel:
    """A famevil checkpoint ready to use: eval mode, no gradients, inputs prepared as in evaluation."""

    def __init__(self, network: MultiTaskModel, source: str | Path, device: str | torch.device = "cpu"):
        self.network = network.eval().to(device)
        self.source = source
        self.device = torch.device(device)
        self.transform = image_transform(network.preprocess, train=False)  # as the checkpoint's base was trained, in evaluation's geometry
        self.tokenize = network.tokenizer()

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.network.tasks

    def capabilities(self) -> set[str]:
        """The calls this model can answer, by the tasks it was trained for: caption, classify, compose, encode, zero_shot."""
        calls = {
            Captioning: ("caption",),
            SubcategoryRecognition: ("classify",),
            TextGuidedRetrieval: ("compose",),
            CrossModalRetrieval: ("encode", "zero_shot"),
        }
        return {call for kind, names in calls.items() if any(isinstance(find_task(name), kind) for name in self.tasks) for call in names}

    def _task(self, kind: type[Task], call: str) -> Task:
        """The model's task of a kind; one line naming the call and the model when it has none."""
        for name in self.tasks:
            task = find_task(name)
            if isinstance(task, kind):
                return task
        raise FamevilError(f"{self.source}: {call}() needs a model trained for {kind.title}; this one has: {', '.join(self.tasks)}")

    def _named_task(self, name: str | None, default: type[Task], call: str) -> Task:
        if name is None:
            return self._task(default, call)
        task = find_task(name)
        if task.name not in self.tasks:
            raise FamevilError(f"{self.source}: task={name!r}: this model has no {task.name} adapters (its tasks: {', '.join(self.tasks)})")
        return task

    def _images(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return torch.stack([self.transform(read_image(image)) for image in _image_list(images)]).to(self.device)

    def _image_batches(self, images: Sequence[ImageInput], batch_size: int) -> Iterator[torch.Tensor]:
        """The images' pixels, batch_size at a time: each batch read and prepared only when it is wanted."""
        return (self._images(batch) for batch in _batches(_image_list(images), batch_size))

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return text_tokens(list(_text_list(texts)), self.tokenize).to(self.device)

    def _paired_batches(self, images: Sequence[ImageInput], texts: Sequence[str], batch_size: int, call: str, text: str) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of images and their texts ({"images", "tokens"}), one text per image, counted before any is read."""
        images, texts = _image_list(images), _text_list(texts)
        if len(images) != len(texts):
            raise FamevilError(f"{call}(): {len(images)} images but {len(texts)} texts; give one {text} per image")
        pixels = self._image_batches(images, batch_size)
        return ({"images": batch, "tokens": self._tokens(chunk)} for batch, chunk in zip(pixels, _batches(texts, batch_size), strict=True))

    def _stacked(self, vectors: Iterator[torch.Tensor]) -> torch.Tensor:
        """Batches of (n, D) vectors as one (N, D); (0, D) for none."""
        return torch.cat([*vectors, torch.empty(0, self.network.embed_dim, device=self.device)])

    @torch.no_grad()
    def caption(
        self,
        images: Sequence[ImageInput],
        beams: int = 1,
        max_new_tokens: int | None = None,
        no_repeat_ngram: int = NO_REPEAT_NGRAM,
        batch_size: int = BATCH_SIZE,
    ) -> list[str]:
        """One caption per image, as copy: greedy decoding, or beam search with beams > 1; no n-gram of
        no_repeat_ngram tokens written twice (0: no blocking, as evaluation decodes); joined into text in
        sentence case ("Short-sleeved shirt."). A one-line FamevilWarning when most captions are not text."""
        task = self._task(Captioning, "caption")
        head = self.network.head(task.name)
        captions = []
        for pixels in self._image_batches(images, batch_size):
            ids = generate(self.network, head, pixels, task.name, max_new_tokens=max_new_tokens, beams=beams, no_repeat_ngram=no_repeat_ngram)
            captions += [as_copy(self.tokenize.decode(caption)) for caption in ids]
        warning = degenerate_warning(captions, str(self.source))
        if warning is not None:
            warnings.warn(warning, FamevilWarning, stacklevel=3)
        return captions

    @torch.no_grad()
    def classify(self, images: Sequence[ImageInput], texts: Sequence[str], top: int = 5, batch_size: int = BATCH_SIZE) -> list[list[Prediction]]:
        """Per image and its product text ("title. description"), the `top` most likely subcategories."""
        task = self._task(SubcategoryRecognition, "classify")
        names, head = self.network.config.vocabularies[task.vocabulary], self.network.head(task.name)
        predictions = []
        for batch in self._paired_batches(images, texts, batch_size, "classify", "text"):
            predictions += ranked(task.logits(self.network, head, batch).softmax(dim=-1), names, top)
        return predictions

    @torch.no_grad()
    def label_set(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = BATCH_SIZE) -> LabelSet:
        """Zero-shot labels encoded once, as CLIP's prompt ensembling does: each template filled with each
        label and embedded with cross-modal retrieval's adapters, normalised, averaged over the
        templates and normalised again. Labels are stripped and must be distinct ignoring case; each
        template has one `{}` where the label goes."""
        retrieval = self._task(CrossModalRetrieval, "zero_shot")
        labels, templates = checked_labels(labels), checked_templates(templates)
        filled = prompts(labels, templates)
        vectors = self.encode_texts(filled, retrieval.name, batch_size)
        ensembled = vectors.reshape(len(templates), len(labels), -1).mean(dim=0)
        return LabelSet(labels, F.normalize(ensembled, dim=-1))

    @torch.no_grad()
    def zero_shot(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str] | LabelSet,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        top: int = 5,
        batch_size: int = BATCH_SIZE,
    ) -> list[list[Prediction]]:
        """Per image, its `top` most likely of any labels ("dress", "shirt", "coat"), with no training
        for them: the softmax over the labels of the model's learnt retrieval scale times the cosine of
        the image's and each label's embedding (label_set). labels may be a LabelSet already encoded,
        which then brings its own templates."""
        retrieval = self._task(CrossModalRetrieval, "zero_shot")
        chosen = labels if isinstance(labels, LabelSet) else self.label_set(labels, templates, batch_size)
        predictions = []
        for pixels in self._image_batches(images, batch_size):
            predictions += self.score_labels(self.network.encode_image(pixels, retrieval.name), chosen, top)
        return predictions

    @torch.no_grad()
    def score_labels(self, image_vectors: torch.Tensor, labels: LabelSet, top: int = 5) -> list[list[Prediction]]:
        """zero_shot's scoring of image embeddings that `encode_images` made (cross-modal retrieval's):
        several label sets over the same images then cost one encoding of them, not one each."""
        scale = self.network.head(self._task(CrossModalRetrieval, "zero_shot").name)()
        return ranked((scale * image_vectors @ labels.vectors.T).softmax(dim=-1), labels.labels, top)

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput], task: str | None = None, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """L2-normalised image embeddings (N, D) with a task's adapters: by default cross-modal
        retrieval's (what text search compares against); the composed-retrieval task's for the
        gallery a composed query searches."""
        chosen = self._named_task(task, CrossModalRetrieval, "encode_images")
        return self._stacked(self.network.encode_image(pixels, chosen.name) for pixels in self._image_batches(images, batch_size))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], task: str | None = None, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """L2-normalised text embeddings (N, D), by default with cross-modal retrieval's adapters."""
        chosen = self._named_task(task, CrossModalRetrieval, "encode_texts")
        return self._stacked(self.network.encode_text(self._tokens(batch), chosen.name) for batch in _batches(_text_list(texts), batch_size))

    def require_search(self) -> tuple[str, ...]:
        """The searches a catalogue index of this model answers (data_specs.indexes.SEARCHES): text and
        similar items from cross-modal retrieval, composed search only with composed retrieval too. One
        line, before any work, when the model has no cross-modal retrieval."""
        self._task(CrossModalRetrieval, "index")
        return (TEXT_SEARCH, SIMILAR_SEARCH) + ((COMPOSED_SEARCH,) if "compose" in self.capabilities() else ())

    @torch.no_grad()
    def catalogue_vectors(self, images: Sequence[ImageInput]) -> dict[str, torch.Tensor]:
        """What a catalogue index keeps per image, of what the model can make: its image vector
        (cross-modal retrieval's image embedding, for text and similar-item search) and, with composed
        retrieval, its gallery vector for composed search."""
        pixels = self._images(images)
        vectors = {IMAGE_VECTORS: self.network.encode_image(pixels, self._task(CrossModalRetrieval, "index").name)}
        if "compose" in self.capabilities():
            vectors[COMPOSED_VECTORS] = self.network.encode_image(pixels, self._task(TextGuidedRetrieval, "index").name)
        return vectors

    @torch.no_grad()
    def compose(self, images: Sequence[ImageInput], texts: Sequence[str], batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """Composed queries (N, D): a reference image and how the wanted item differs from it ("is red,
        has short sleeves"), to compare with `encode_images(..., task="tgir")`."""
        task = self._task(TextGuidedRetrieval, "compose")
        return self._stacked(task.queries(self.network, batch) for batch in self._paired_batches(images, texts, batch_size, "compose", "modification text"))


def _image_list(images: Sequence[ImageInput] | ImageInput) -> Sequence[ImageInput]:
    if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, torch.Tensor) and images.dim() == 3):
        return [images]  # one image given alone
    return images


def _text_list(texts: Sequence[str] | str) -> Sequence[str]:
    return [texts] if isinstance(texts, str) else texts  # one text given alone


def _batches(items: Sequence[Item], batch_size: int) -> Iterator[Sequence[Item]]:
    if batch_size < 1:
        raise FamevilError(f"batch_size={batch_size}: must be 1 or more")
    return (items[start : start + batch_size] for start in range(0, len(items), batch_size))


def _raised_here(call: Callable[..., Result]) -> Callable[..., Result]:
    """`call` with its FamevilError raised from here rather than from deep inside famevil: a script's
    traceback is then the caller's line and this one, not the checkpoint reader's dozen frames, for a
    problem (a mistyped folder) that the message alone explains."""

    @functools.wraps(call)
    def raising_here(*args, **kwargs) -> Result:
        try:
            return call(*args, **kwargs)
        except FamevilError as error:
            raise error.with_traceback(None) from None

    return raising_here


@_raised_here
def load(source: str | Path, device: str | torch.device = "cpu") -> FashionModel:
    """Any famevil checkpoint directory (base, teacher, student), its manifest and weights verified; or a
    plain base as `--base` takes it (an open_clip NAME:TAG, local-dir:DIR, hf-hub:ORG/NAME, a transformers
    CLIP folder), with cross-modal retrieval's adapters at zero: it embeds exactly as the base does."""
    if _is_plain_base(str(source)):
        return FashionModel(plain_base(str(source)), str(source), device)
    directory = Path(source)
    if directory.is_file() and directory.suffix in WEIGHT_SUFFIXES:
        raise FamevilError(f"{directory}: a bare weights file does not say its architecture; load its open_clip folder as local-dir:DIR instead")
    return FashionModel(load_checkpoint(directory), directory, device)


def _is_plain_base(source: str) -> bool:
    """A base named as --base names one, not a famevil checkpoint: a transformers CLIP folder, or a
    NAME:TAG, hf-hub: or local-dir: name (which no file on disk is called)."""
    path = Path(source)
    return is_transformers_clip(path) or (":" in source and not path.exists())


def plain_base(source: str) -> MultiTaskModel:
    """The base alone as a model: cross-modal retrieval's adapters, which start at zero and so add
    nothing, and the base's own learnt logit scale as its retrieval scale (what zero-shot scores use)."""
    # A weights file, the one base that needs an architecture named beside it, never reaches here.
    base = resolve_base(source, architecture=source)
    retrieval = CrossModalRetrieval.name
    network = base.model(ModelConfig(backbone=base.backbone, tasks=(retrieval,)))
    with torch.no_grad():
        network.head(retrieval).log_scale.copy_(network.backbone.logit_scale)
    return network
