"""The tiny CLIP of the embedded world: its open_clip config, and its compact checkpoint format.

The checkpoint stores every weight except the rows of the token embedding that pretraining never
touched: those keep their seeded initialisation and are regenerated on load, which shrinks the
file from 33 MB to a few MB without changing a single value.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from gradflow.atomic import atomic_torch_save
from subpt.errors import SubptError
from subpt.quiet import quiet_open_clip

MODEL_NAME = "subpt-tiny"
CONFIG_PATH = Path(__file__).with_name(f"{MODEL_NAME}.json")
CHECKPOINT_PATH = Path(__file__).with_name("tiny_clip.pt")
TOKEN_INIT_SEED = 20221104
FORMAT = "subpt-tiny-clip/1"


def register() -> None:
    """Make `subpt-tiny` known to open_clip's factory (idempotent)."""
    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_PATH)


def initial_token_embedding(vocab_size: int, width: int) -> torch.Tensor:
    """The seeded N(0, 0.02) token-embedding initialisation shared by pretraining and loading."""
    gen = torch.Generator().manual_seed(TOKEN_INIT_SEED)
    return torch.randn(vocab_size, width, generator=gen) * 0.02


def create_random_model() -> open_clip.CLIP:
    """A randomly initialised tiny CLIP whose token embedding has the seeded initialisation."""
    register()
    with quiet_open_clip():  # open_clip warns that no pretrained weights were loaded: that is the point
        model = open_clip.create_model(MODEL_NAME, pretrained=None)
    with torch.no_grad():
        w = model.token_embedding.weight
        w.copy_(initial_token_embedding(*w.shape))
    return model


def save_compact(model: open_clip.CLIP, path: Path, info: dict) -> None:
    """Write the model with only the token-embedding rows that differ from their initialisation."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    emb = state.pop("token_embedding.weight")
    init = initial_token_embedding(*emb.shape)
    rows = torch.nonzero((emb != init).any(dim=1)).flatten()
    payload = {
        "format": FORMAT,
        "state_dict": state,
        "token_rows": rows,
        "token_values": emb[rows].clone(),
        "vocab_size": emb.shape[0],
        "info": info,
    }
    path = Path(path)
    atomic_torch_save(payload, path)


def load_compact(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a compact checkpoint into a full state dict and its build info."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise SubptError(
            f"embedded model {path} is missing: rebuild it with `subpt build-embedded` (about 15 minutes on 2 cores)"
        ) from e
    except Exception as e:
        raise SubptError(f"embedded model {path} is not readable ({e}); rebuild it with `subpt build-embedded`") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SubptError(f"{path} is not a subpt tiny-CLIP checkpoint; rebuild it with `subpt build-embedded`")
    state = dict(payload["state_dict"])
    width = payload["token_values"].shape[1]
    emb = initial_token_embedding(int(payload["vocab_size"]), width)
    emb[payload["token_rows"]] = payload["token_values"]
    state["token_embedding.weight"] = emb
    return state, dict(payload.get("info", {}))
