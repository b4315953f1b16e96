from ._server.cli import main

raise SystemExit(main())
