from ._server.run.cli import main

raise SystemExit(main())
