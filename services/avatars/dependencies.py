"""The avatars service's own nameko extensions: its remote sources and its refresh timer.

Both read their settings from the environment when the container sets up, so a bad value
stops the service at start with a message naming the variable.
"""
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from services.avatars import domain
from services.avatars.clients import FetchSettings, avatar_fetchers
from services.avatars.domain import Fetcher


@dataclass(frozen=True)
class Sources:
    """The fetchers `domain.resolve` takes (one per remote source) and how long an avatar stays fresh."""

    fetchers: Mapping[str, Fetcher]
    max_age: timedelta


class AvatarSources(DependencyProvider):
    """Gives workers the Clearbit and Gravatar fetchers (CLEARBIT_LOGO_URL, GRAVATAR_URL, limits)
    and AVATAR_MAX_AGE; the fetchers' connection pools are shared by the workers of a process."""

    def setup(self):
        self.sources = Sources(fetchers=avatar_fetchers(FetchSettings.from_environ(os.environ)),
                               max_age=domain.max_age(os.environ.get("AVATAR_MAX_AGE")))

    def get_dependency(self, worker_ctx):
        return self.sources


class RefreshTimer(Timer):
    """A timer ticking as often as AVATAR_MAX_AGE asks (`domain.refresh_check_interval`)."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def setup(self):
        self.interval = domain.refresh_check_interval(domain.max_age(os.environ.get("AVATAR_MAX_AGE")))


refresh_timer = RefreshTimer.decorator
