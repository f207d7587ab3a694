"""Team slugs made from a name, unique among those taken: shared by the services and the
migration that gives every existing client a team (which cannot import models)."""

from collections.abc import Callable

from django.utils.text import slugify

SLUG_MAX = 50


def unique_slug(name: str, taken: Callable[[str], bool], fallback: str = "team") -> str:
    """``name`` as a slug (``fallback`` when nothing of it is left), with ``-2``, ``-3`` ...
    appended until ``taken`` says no."""
    base = (slugify(name) or fallback)[:SLUG_MAX]
    slug, n = base, 1
    while taken(slug):
        n += 1
        suffix = f"-{n}"
        slug = f"{base[:SLUG_MAX - len(suffix)]}{suffix}"
    return slug
