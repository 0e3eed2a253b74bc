from metaray.cli import main

raise SystemExit(main())
