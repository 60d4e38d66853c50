"""``prune.tie_mode``: how pruning ``lm_head`` treats an output projection tied to the input
embedding (t5-small's; see docs/course.md, "The metrics"). The config keeps the string; code asks
the mode what it does (:class:`TieMode`) instead of comparing strings."""

from __future__ import annotations

from enum import Enum


class TieMode(Enum):
    #: pruning lm_head prunes the shared embedding for every use: one tensor, one mask
    TIED = "tied"
    #: lm_head gets its own copy before pruning and only the copy is pruned
    UNTIE = "untie"
    #: lm_head masked, the tied embedding left dense (what the course's notebook does)
    COURSE = "course"

    @classmethod
    def of(cls, value: str | TieMode) -> TieMode:
        """The mode named ``value`` (a config's string); ValueError naming the choices."""
        if isinstance(value, TieMode):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"tie_mode={value!r}: choose one of {[m.value for m in cls]}") from None

    @property
    def shares_mask(self) -> bool:
        """The embedding is pruned with lm_head: after a cut its masks are made one again, and a
        weight update (OBS) may not touch the head, whose rows are also the input embedding."""
        return self is TieMode.TIED

    @property
    def unties_head(self) -> bool:
        """lm_head gets its own copy of the embedding before the first cut."""
        return self is TieMode.UNTIE

    @property
    def masks_head_only(self) -> bool:
        """lm_head's mask lies over the embedding that stays dense: one tensor seen masked and
        dense, so lm_head cannot be pruned and measured apart from the embedding."""
        return self is TieMode.COURSE


#: The names a config may give (the order of :class:`TieMode`).
TIE_MODES = tuple(m.value for m in TieMode)
