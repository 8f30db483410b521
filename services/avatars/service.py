"""Customer avatars: Clearbit logo, then Gravatar, then generated initials; cached.

Only the health check exists so far; the features come later.
"""
from nameko.rpc import rpc


class AvatarsService:
    name = "avatars"

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}
