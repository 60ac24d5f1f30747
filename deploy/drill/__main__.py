import sys

from deploy.drill.drill import main

sys.exit(main())
