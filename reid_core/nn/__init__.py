"""Network pieces shared by several methods: the weights resolver, heads, the ResNet trunk, lr schedules."""
