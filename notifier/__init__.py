"""datafold-notifier: new Datafold alert and error runs to Slack and signed webhooks."""

__version__ = "0.1.0"
