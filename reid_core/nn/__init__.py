"""Network pieces shared by several methods: the weights resolver, heads."""
