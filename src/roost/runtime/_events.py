"""Where a run's events go: live to whoever watches the session, and a durable copy into
the session DAG.

Two ways to keep the durable copy, chosen by ``[runtime] record_events``:

* ``inline`` (the default): the run writes each event to the DAG itself, then publishes it.
* ``projection`` (distributed mode): the run publishes each event to the JetStream stream
  :data:`EVENTS_STREAM`, which NATS acknowledges once stored, so the run never waits on the
  database for an event and none is lost; ``projection`` workers (:class:`EventProjection`)
  write them into the DAG, acknowledging each only after the write (redelivered, boundedly,
  if the state service is away; de-duplicated by event id, so a redelivery is harmless).

Token events are live only: they are many, and the reply they make up is recorded anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roost.bus import Bus, ConsumerOptions, DurableDelivery, Reject, Stream, Subscription
from roost.protocol import EventMessage, ProtocolError, decode, encode, subjects

if TYPE_CHECKING:
    from roost.runtime._recorder import Recorder

log = logging.getLogger("roost.events")

#: Every session's events (``roost.v1.events.<session>``), kept a day for the projection.
EVENTS_STREAM = Stream(name="ROOST_EVENTS", subjects=(subjects.all_events(),))
#: The durable consumer the projection workers share.
PROJECTION_CONSUMER = "projection"


class EventLog:
    """Publishes a run's events and keeps their durable copy (see the module docstring)."""

    def __init__(self, bus: Bus, recorder: Recorder, *, via_stream: bool = False) -> None:
        self.bus = bus
        self.recorder = recorder
        self.via_stream = via_stream

    async def emit(self, event: EventMessage) -> None:
        subject = subjects.events(event.session)
        data = encode(event)
        if event.type == "token":
            await self.bus.publish(subject, data)
        elif self.via_stream:
            await self.bus.publish_durable(subject, data, msg_id=event.id)
        else:
            await self.recorder.record(event)
            await self.bus.publish(subject, data)


class EventProjection:
    """Writes the events of :data:`EVENTS_STREAM` into the session DAG (``projection``
    workers; several share the work)."""

    def __init__(
        self, bus: Bus, recorder: Recorder, options: ConsumerOptions = ConsumerOptions()
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.options = options
        self.recorded = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.bus.consume(
                EVENTS_STREAM, PROJECTION_CONSUMER, self._project, self.options
            )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _project(self, delivery: DurableDelivery) -> None:
        try:
            event = decode(delivery.data, EventMessage)
        except ProtocolError as exc:
            raise Reject(f"not an event message: {exc}") from None
        if event.type == "token":
            return  # captured by the stream with the rest of the subject; live only
        await self.recorder.record(event)  # idempotent: a node per message id
        self.recorded += 1
