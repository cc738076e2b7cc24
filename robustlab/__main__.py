from robustlab.cli import main

raise SystemExit(main())
