from ragbus.cli import main

raise SystemExit(main())
