/* SPDX-License-Identifier: MIT */
/* Sets of format/modifier pairs (see format-set.h). */
#include <errno.h>
#include <stdlib.h>

#include "format-set.h"

#define FMT_SET_MAX 65536

void vgb_fmt_set_finish(struct vgb_fmt_set *set)
{
	free(set->v);
	*set = (struct vgb_fmt_set){ 0 };
}

bool vgb_fmt_set_has(const struct vgb_fmt_set *set, uint32_t fourcc, uint64_t modifier)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i].fourcc == fourcc && set->v[i].modifier == modifier)
			return true;
	return false;
}

int vgb_fmt_set_add(struct vgb_fmt_set *set, uint32_t fourcc, uint64_t modifier)
{
	if (vgb_fmt_set_has(set, fourcc, modifier))
		return 0;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 32;
		struct vgb_fmt_pair *v;
		if (cap > FMT_SET_MAX)
			return -E2BIG;
		v = reallocarray(set->v, cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		set->v = v;
		set->cap = cap;
	}
	set->v[set->n++] = (struct vgb_fmt_pair){ fourcc, modifier };
	return 0;
}
