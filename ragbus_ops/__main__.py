from ragbus_ops.cli import main

raise SystemExit(main())
