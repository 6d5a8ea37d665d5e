"""The built-in `tiny` base model: built offline and deterministically, so everything runs with no network.

A 2-layer Llama causal LM (about 210k parameters) with fixed-seed weights and a byte-level BPE tokenizer trained
on the bundled corpus (corpus/corpus.txt). The tokenizer has pad/bos/eos tokens and a chat template that closes every
turn with `<|end|>` and wraps assistant text in `{% generation %}` markers (for `assistant_only_loss`).

The same directory loads as `AutoModelForCausalLM` and as `AutoModelForSequenceClassification(num_labels=1)`
(a new, randomly initialised `score` head) for reward models.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .builtin import SMALL_DIR, SMALL_NAME

TINY_NAME = "tiny"
TINY_VERSION = 2  # bump when anything below changes: the built dir is named after it
CORPUS_PATH = Path(__file__).parent / "corpus" / "corpus.txt"

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
END_OF_TURN = "<|end|>"

# (Jinja's trim_blocks eats a newline right after a block tag, hence the explicit newline expression.)
# Every turn is "<|role|>\n{content}<|end|>\n"; assistant content and its <|end|> are the trainable part.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Model shape: small enough that a training step takes tens of milliseconds on one CPU core.
VOCAB_SIZE = 1000
HIDDEN_SIZE = 64
INTERMEDIATE_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
MAX_POSITIONS = 512
SEED = 1234
# Much wider than Llama's 0.02. At 0.02 the random model is uniform over its vocabulary (entropy 6.9 nats = ln 1000)
# and, behind the final RMSNorm, LoRA cannot move its next-token distribution far enough for RL to show anything.
# At 0.3 the entropy is about 4.3 nats, like a real LM, and PPO/RLOO rewards rise within a few dozen updates.
INITIALIZER_RANGE = 0.3


def tiny_model_dir(data_dir: str | os.PathLike) -> Path:
    """Where the tiny model lives under the data directory."""
    return Path(data_dir) / "models" / f"{TINY_NAME}-v{TINY_VERSION}"


def resolve_model_source(source: str, data_dir: str | os.PathLike | None = None) -> str:
    """Map a BaseModel source to something `from_pretrained` accepts.

    "tiny" -> the built-in model under `data_dir` (built on first use); "small" -> the committed built-in model
    (training/engine/builtin/small, read-only); a local directory -> its absolute path; anything else (a Hugging Face Hub id such as "Qwen/Qwen2.5-0.5B-Instruct") -> unchanged.
    """
    if source == TINY_NAME:
        if data_dir is None:
            raise ValueError("data_dir is required to resolve the built-in 'tiny' model")
        return str(ensure_tiny_model(tiny_model_dir(data_dir)))
    if source == SMALL_NAME:
        return str(SMALL_DIR)
    if os.path.isdir(source):
        return str(Path(source).resolve())
    return source


def ensure_tiny_model(path: str | os.PathLike) -> Path:
    """Build the tiny model into `path` unless it is already there; return `path`.

    Atomic: the model is built in a temporary sibling directory and renamed into place, so a concurrent or
    interrupted build never leaves a half-written model behind.
    """
    path = Path(path).resolve()
    if _is_complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build_tiny_model(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not _is_complete(path):  # not a concurrent builder winning the race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _is_complete(path: Path) -> bool:
    return (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()


def build_tokenizer():
    """Train the byte-level BPE tokenizer on the bundled corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(lines, trainer=trainer)
    return chat_tokenizer(tok, MAX_POSITIONS)


def chat_tokenizer(tok, max_positions: int):
    """A trained `tokenizers` BPE as the transformers tokenizer of the built-in models: a leading BOS, our special
    tokens and chat template, right padding."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    bos_id = tok.token_to_id("<|bos|>")
    # Plain text gets a leading BOS, like Llama; chat-templated text carries it from the template instead.
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|pad|>", "<|bos|>", "<|eos|>")],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_positions,
        padding_side="right",
    )


def build_tiny_model(path: str | os.PathLike) -> None:
    """Write the tokenizer and a fixed-seed random Llama model into `path` (which may already exist)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=INITIALIZER_RANGE,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
