#!/usr/bin/python3
# A freedesktop notification server for tests/integration/notify_test.cpp: it owns
# org.freedesktop.Notifications on the test's own session bus, writes every call it gets to a log
# (one JSON object a line), and with --act KEY answers each notification by emitting
# ActionInvoked(id, KEY) a moment after showing it, as a person clicking that button would;
# with --stall S it hangs S seconds in GetCapabilities (a server too slow to wait for).
# Debian's python3-dbus with the GLib main loop (python3-gi).
import argparse
import json
import time

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

IFACE = "org.freedesktop.Notifications"


class Server(dbus.service.Object):
    def __init__(self, bus, log, act, caps, stall):
        super().__init__(bus, "/org/freedesktop/Notifications")
        self.stall = stall
        self.log = log
        self.act = act
        self.caps = caps
        self.next = 1

    def record(self, **what):
        self.log.write(json.dumps(what) + "\n")
        self.log.flush()

    @dbus.service.method(IFACE, in_signature="", out_signature="as")
    def GetCapabilities(self):
        self.record(method="GetCapabilities")
        if self.stall:
            time.sleep(self.stall)  # a server that hangs: agentbox must not wait for it
        return self.caps

    @dbus.service.method(IFACE, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("agentbox-test", "agentbox", "1", "1.2")

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, expire):
        nid = self.next
        self.next += 1
        self.record(method="Notify", id=nid, app=str(app), summary=str(summary), body=str(body),
                    actions=[str(a) for a in actions], expire=int(expire))
        if self.act:
            GLib.timeout_add(300, self.invoke, nid)
        return dbus.UInt32(nid)

    def invoke(self, nid):
        self.record(method="invoke", id=nid, key=self.act)
        self.ActionInvoked(dbus.UInt32(nid), self.act)
        return False

    @dbus.service.method(IFACE, in_signature="u", out_signature="")
    def CloseNotification(self, nid):
        self.record(method="CloseNotification", id=int(nid))
        self.NotificationClosed(nid, dbus.UInt32(3))

    @dbus.service.signal(IFACE, signature="us")
    def ActionInvoked(self, nid, key):
        pass

    @dbus.service.signal(IFACE, signature="uu")
    def NotificationClosed(self, nid, reason):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--act", default="")
    p.add_argument("--caps", default="actions,body")
    p.add_argument("--stall", type=float, default=0)
    a = p.parse_args()
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(a.address)
    log = open(a.log, "a")
    server = Server(bus, log, a.act, [c for c in a.caps.split(",") if c], a.stall)
    name = dbus.service.BusName(IFACE, bus)  # held while it is referenced
    server.record(method="ready", name=str(name.get_name()))
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
