"""Likes: one person's like of a prompt or of one of its images, and what likes rank — the
gallery sorted by likes or likeness, and prompts by likes. (Packs are ranked in services/packs.py.)"""

from __future__ import annotations

from typing import Any

from storage import Store
from studio.errors import InvalidInput
from studio.principals import LOCAL_ADMIN, Principal
from studio.services.lookups import any_tune, prompt_row


class Likes:
    def __init__(self, store: Store):
        self.store = store

    def like_prompt(
        self, prompt_id: int, user: str, image_idx: int | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Record `user`'s like of a prompt (or of one of its images). Liking twice changes
        nothing. A prompt made from a pack also counts for its pack prompt and pack. `user` is
        an opaque id: the API key's owner, the login name, or a browser id. Returns
        {prompt_id, image_idx, liked, likes_count}."""
        user, index = self._like_target(prompt_id, user, image_idx, principal)
        self.store.add_like(prompt_id, user, index)
        return {"prompt_id": prompt_id, "image_idx": image_idx, "liked": True, "likes_count": self._likes(prompt_id)}

    def unlike_prompt(
        self, prompt_id: int, user: str, image_idx: int | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Take back `user`'s like (a no-op when there is none); returns what like_prompt does."""
        user, index = self._like_target(prompt_id, user, image_idx, principal)
        self.store.remove_like(prompt_id, user, index)
        return {"prompt_id": prompt_id, "image_idx": image_idx, "liked": False, "likes_count": self._likes(prompt_id)}

    def _like_target(self, prompt_id: int, user: str, image_idx: int | None, principal: Principal) -> tuple[str, int]:
        """Check a like's prompt, user and image; returns (user, stored image index)."""
        user = (user or "").strip()
        if not user or len(user) > 200:
            raise InvalidInput("A like needs a user id of 1 to 200 characters.", field="user")
        prompt_row(self.store, prompt_id, principal)
        if image_idx is None:
            return user, -1
        count = len(self.store.prompt_images(prompt_id))
        if not 0 <= image_idx < count:
            raise InvalidInput(
                f"Prompt {prompt_id} has {count} image(s): image_idx must be 0 to {count - 1}.", field="image_idx"
            )
        return user, image_idx

    def _likes(self, prompt_id: int) -> int:
        prompt = self.store.get_prompt(prompt_id)
        return prompt["likes_count"] if prompt else 0

    def prompt_rankings(
        self, tune_id: int | None = None, limit: int = 50, *, principal: Principal = LOCAL_ADMIN
    ) -> list[dict[str, Any]]:
        """`principal`'s prompts (an admin's: all) by number of likes, most first (ties: newest
        first); of one tune when given (NotFound unless `principal` may see it)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be 1 to 1000.", field="limit")
        if tune_id is not None:
            any_tune(self.store, tune_id, principal)
        return self.store.top_prompts(tune_id=tune_id, limit=limit, owner=principal.owner_filter)

    def gallery(
        self,
        *,
        tune_id: int | None = None,
        pack_id: int | None = None,
        sort: str = "newest",
        limit: int = 24,
        offset: int = 0,
        user: str | None = None,
        likeness: str = "all",
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """Prompts for the gallery views, `sort` 'newest', 'likes' (most liked first) or
        'likeness' (best image likeness first, unscored last), of one tune and/or made from one
        pack when given; `likeness` 'match' keeps prompts with an image of the subject, 'miss'
        those whose scored images all miss it (no face, or another person), 'copy' those with an
        image flagged as a copy of a training photo or reference crop, 'all' every one.
        Each is the prompt row with `tune_title`, `pack_id`, `pack_title` (None outside packs),
        `warnings`, and `images`: per image {idx, path, seed, width, height, likes (that
        image's), liked (by `user`), likeness (record or None)}. The prompt's `likes_count`
        counts every like of it and of its images. Raises InvalidInput for a bad sort or
        likeness filter, or a limit outside 1..200."""
        if sort not in ("newest", "likes", "likeness"):
            raise InvalidInput(f"sort '{sort}' is not 'newest', 'likes' or 'likeness'.", field="sort")
        if likeness not in ("all", "match", "miss", "copy"):
            raise InvalidInput(
                f"likeness filter '{likeness}' is not 'all', 'match', 'miss' or 'copy'.", field="likeness"
            )
        if not 1 <= limit <= 200 or offset < 0:
            raise InvalidInput("limit must be 1 to 200 and offset at least 0.", field="limit")
        rows = self.store.gallery_prompts(
            tune_id=tune_id,
            pack_id=pack_id,
            order=sort,
            limit=limit,
            offset=offset,
            likeness=None if likeness == "all" else likeness,
            owner=principal.owner_filter,
        )
        return [{**row, "warnings": row.get("warnings") or [], "images": self._images(row["id"], user)} for row in rows]

    def prompt_images(
        self, prompt_id: int, user: str | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> list[dict[str, Any]]:
        """A prompt's images in order, each {idx, path, seed, width, height, likes, liked,
        likeness}: `likes` counts that image's likes, `liked` says whether `user` liked it,
        `likeness` is its studio/likeness.py record (None: not scored)."""
        prompt_row(self.store, prompt_id, principal)
        return self._images(prompt_id, user)

    def _images(self, prompt_id: int, user: str | None) -> list[dict[str, Any]]:
        likes = self.store.image_likes(prompt_id)
        mine = set(self.store.liked_by(prompt_id, user)) if user else set()
        return [
            {
                **{k: image[k] for k in ("idx", "path", "seed", "width", "height")},
                "likes": likes.get(image["idx"], 0),
                "liked": image["idx"] in mine,
                "likeness": image["likeness"],
            }
            for image in self.store.prompt_images(prompt_id)
        ]
