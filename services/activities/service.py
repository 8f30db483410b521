"""The activity feed of customers (events, threads, notes, calls, MRR movements, transactions).

Only the health check exists so far; the features come later.
"""
from nameko.rpc import rpc


class ActivitiesService:
    name = "activities"

    @rpc
    def health(self):
        return {"service": self.name, "status": "ok"}
