"""One module per destination kind; each implements `notifier.deliver.sink.Sink`."""
