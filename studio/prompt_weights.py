"""A1111 prompt weights for SD 1.5 and SDXL: `(word:1.3)`, `(word)` (x1.1), `[word]` (/1.1),
`\\(` for a literal bracket, `BREAK`, and prompts longer than the text encoder's window.

Written here rather than taken from compel: compel installs against diffusers 0.42 and
transformers 5, but its grammar is not A1111's (`(word)1.3`, `word+`, no BREAK) and it
down-weights by masking rather than scaling, so A1111 prompts would mean something else.

The A1111 way: the text is split into (fragment, weight) runs; their tokens fill windows of
model_max_length - 2 (75) tokens, each framed by BOS and EOS and padded, a BREAK closing the
current window early; each window is encoded on its own, its token embeddings multiplied by
their weights and the whole rescaled to its unweighted mean, and the windows are concatenated
along the sequence. The negative prompt gets as many windows (empty ones added). SDXL does this
with both text encoders (their penultimate hidden states side by side) and takes the pooled
embedding from the second encoder's first window, as its pipeline does.

Text with no weights, no BREAK and no more tokens than one window is passed to the pipeline as
plain text (brackets of weight 1 removed), so `(word:1.0)` gives exactly the image `word` does.
"""

from __future__ import annotations

import re
from typing import Any

from studio.errors import InvalidInput

#: A1111's BREAK: a word of its own, in capitals, that starts a new text-encoder window.
BREAK = re.compile(r"\s*\bBREAK\b\s*")

#: Families whose pipelines take A1111 weights through `prompt_embeds`.
FAMILIES = ("sd15", "sdxl")
ROUND, SQUARE = 1.1, 1 / 1.1

# A1111's attention grammar (modules/prompt_parser.py).
_ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""",
    re.X,
)


def fragments(text: str) -> list[tuple[str, float]]:
    """(text, weight) runs of `text`, neighbours of equal weight merged; a BREAK is ("BREAK",
    -1). InvalidInput (field text) for a weight that is not a number."""
    out: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in out[start:]:
            item[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            out.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(out))
        elif piece == "[":
            square_open.append(len(out))
        elif weight is not None and round_open:
            try:
                factor = float(weight)
            except ValueError:
                raise InvalidInput(
                    f"Prompt weight '{weight}' is not a number: write (word:1.3).", field="text"
                ) from None
            multiply(round_open.pop(), factor)
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for index, part in enumerate(BREAK.split(piece)):
                if index:
                    out.append(["BREAK", -1.0])
                out.append([part, 1.0])
    for start in round_open:  # an unclosed bracket weighs to the end, as in A1111
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    merged: list[list[Any]] = []
    for item in out or [["", 1.0]]:
        if merged and merged[-1][1] == item[1] and item[1] != -1:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(piece, float(weight)) for piece, weight in merged]


def has_weights(text: str) -> bool:
    """Whether `text` uses weights or BREAK (so a family without them should say so)."""
    return any(weight != 1.0 for _piece, weight in fragments(text))


def windows(tokenizer, runs: list[tuple[str, float]]) -> list[tuple[list[int], list[float]]]:
    """The (token ids, weights) of each window, without BOS/EOS or padding."""
    size = tokenizer.model_max_length - 2
    out: list[tuple[list[int], list[float]]] = [([], [])]
    for piece, weight in runs:
        if weight == -1:
            out.append(([], []))
            continue
        for token in tokenizer(piece, add_special_tokens=False).input_ids:
            if len(out[-1][0]) == size:
                out.append(([], []))
            out[-1][0].append(token)
            out[-1][1].append(weight)
    return out


def plain_text(tokenizer, text: str) -> str | None:
    """`text` without brackets when it needs no weighting (all weights 1, no BREAK, one
    window), else None."""
    runs = fragments(text)
    if any(weight != 1.0 for _piece, weight in runs) or len(windows(tokenizer, runs)) > 1:
        return None
    return "".join(piece for piece, _weight in runs)


def prompt_inputs(pipe, family: str, prompt: str, negative_prompt: str) -> dict[str, Any]:
    """The prompt arguments for an SD 1.5 or SDXL pipeline: plain `prompt` (and
    `negative_prompt` when given) when neither text needs weighting, else `prompt_embeds`,
    `negative_prompt_embeds` (and SDXL's pooled ones)."""
    import torch

    plain = plain_text(pipe.tokenizer, prompt), plain_text(pipe.tokenizer, negative_prompt)
    if None not in plain:
        return {"prompt": plain[0], **({"negative_prompt": plain[1]} if plain[1] else {})}
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if family == "sdxl":
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    positive = [windows(tokenizer, fragments(prompt)) for tokenizer, _ in encoders]
    negative = [windows(tokenizer, fragments(negative_prompt)) for tokenizer, _ in encoders]
    count = max(len(w) for w in (*positive, *negative))
    embeds, pooled = [], []
    for side in (positive, negative):
        hidden = []
        for (tokenizer, encoder), side_windows in zip(encoders, side):
            states, pool = _encode(tokenizer, encoder, side_windows + [([], [])] * (count - len(side_windows)), family)
            hidden.append(states)
            pooled.append(pool)
        embeds.append(hidden[0] if len(hidden) == 1 else torch.cat(hidden, dim=-1))
    inputs = {"prompt_embeds": embeds[0], "negative_prompt_embeds": embeds[1]}
    if family == "sdxl":
        inputs.update(pooled_prompt_embeds=pooled[1], negative_pooled_prompt_embeds=pooled[3])
        if not negative_prompt and pipe.config.get("force_zeros_for_empty_prompt", False):
            # As the SDXL pipeline does for an empty negative prompt.
            inputs["negative_prompt_embeds"] = inputs["negative_prompt_embeds"].zero_()
            inputs["negative_pooled_prompt_embeds"] = inputs["negative_pooled_prompt_embeds"].zero_()
    return inputs


def _encode(tokenizer, encoder, side_windows, family: str):
    """(hidden states of the windows side by side [1, n x window, dim], pooled embedding of
    the first window or None)."""
    import torch

    length = tokenizer.model_max_length
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, weights = [], []
    for tokens, token_weights in side_windows:
        ids.append([tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [pad] * (length - len(tokens) - 2))
        weights.append([1.0, *token_weights] + [1.0] * (length - len(tokens) - 1))
    ids_t = torch.tensor(ids, device=encoder.device)
    output = encoder(ids_t, output_hidden_states=family == "sdxl")
    hidden = output.hidden_states[-2] if family == "sdxl" else output[0]
    pooled = output.text_embeds[:1] if hasattr(output, "text_embeds") else None  # SDXL's second encoder
    weight_t = torch.tensor(weights, device=hidden.device, dtype=hidden.dtype)[..., None]
    if bool((weight_t != 1).any()):
        original = hidden.mean(dim=(1, 2), keepdim=True)
        weighted = hidden * weight_t
        new_mean = weighted.mean(dim=(1, 2), keepdim=True)
        # A1111 rescales each window to its unweighted mean (a mean of 0 is left alone).
        hidden = weighted * torch.where(new_mean.abs() > 1e-6, original / new_mean, torch.ones_like(new_mean))
    return hidden.reshape(1, -1, hidden.shape[-1]), pooled
