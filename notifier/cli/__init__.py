"""The command line: `datafold-notifier run | once | check | mute | state | routes | demo`."""
