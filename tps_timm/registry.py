"""Model names users write, declared as aliases of ``architecture.tag`` and registered with timm."""
import sys
from typing import Callable, Dict

from timm.models import register_model, split_model_name_tag

__all__ = ['register_model_aliases']


def _alias_entrypoint(alias: str, module_name: str, entrypoint: Callable, tag: str) -> Callable:
    def alias_fn(pretrained: bool = False, **kwargs):
        kwargs['pretrained_cfg'] = kwargs.get('pretrained_cfg') or tag
        return entrypoint(pretrained=pretrained, **kwargs)

    alias_fn.__name__ = alias_fn.__qualname__ = alias
    alias_fn.__module__ = module_name
    alias_fn.__doc__ = f"{alias} = {entrypoint.__name__}.{tag}: {entrypoint.__doc__ or ''}".strip()
    return alias_fn


def register_model_aliases(module_name: str, aliases: Dict[str, str]) -> None:
    """Register each alias as a timm entrypoint of ``architecture.tag`` in ``module_name``, as timm's
    ``register_model_deprecations`` maps names, but without its warning: these are names to use, not old ones."""
    module = sys.modules[module_name]
    for alias, target in aliases.items():
        name, tag = split_model_name_tag(target)
        fn = _alias_entrypoint(alias, module_name, getattr(module, name), tag)
        setattr(module, alias, fn)
        register_model(fn)
