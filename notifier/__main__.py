from notifier.cli.main import main

raise SystemExit(main())
