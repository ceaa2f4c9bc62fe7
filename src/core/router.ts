/**
 * The topic subscription index: exact topics in a hash map, wildcard filters
 * in a trie over levels. `match` walks the trie once per publish, so its cost
 * grows with the topic depth and the number of matching wildcard branches,
 * not with the number of subscriptions.
 */

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  /** Subscribers whose filter ends here. */
  here: Set<T>;
  /** Subscribers whose filter is `…/this/#`. */
  hash: Set<T>;
}

function node<T>(): TrieNode<T> {
  return { children: new Map(), here: new Set(), hash: new Set() };
}

export class TopicIndex<T> {
  private readonly exact = new Map<string, Set<T>>();
  private readonly root: TrieNode<T> = node();
  private wildcardCount = 0;

  /** Adds one subscription; returns false when it was there already. */
  add(filter: string, sub: T): boolean {
    if (!filter.includes('+') && !filter.includes('#')) {
      let set = this.exact.get(filter);
      if (!set) this.exact.set(filter, (set = new Set()));
      if (set.has(sub)) return false;
      set.add(sub);
      return true;
    }
    const levels = filter.split('/');
    let n = this.root;
    for (const l of levels) {
      if (l === '#') {
        if (n.hash.has(sub)) return false;
        this.wildcardCount++;
        n.hash.add(sub);
        return true;
      }
      let c = n.children.get(l);
      if (!c) n.children.set(l, (c = node()));
      n = c;
    }
    if (n.here.has(sub)) return false;
    this.wildcardCount++;
    n.here.add(sub);
    return true;
  }

  /** Removes one subscription; returns whether it was there. */
  remove(filter: string, sub: T): boolean {
    if (!filter.includes('+') && !filter.includes('#')) {
      const set = this.exact.get(filter);
      const removed = set?.delete(sub) ?? false;
      if (removed && set!.size === 0) this.exact.delete(filter);
      return removed;
    }
    const levels = filter.split('/');
    const path: [TrieNode<T>, string][] = [];
    let n: TrieNode<T> | undefined = this.root;
    let removed = false;
    for (const l of levels) {
      if (l === '#') {
        removed = n.hash.delete(sub);
        break;
      }
      const c: TrieNode<T> | undefined = n.children.get(l);
      if (!c) return false;
      path.push([n, l]);
      n = c;
    }
    if (levels[levels.length - 1] !== '#') removed = n.here.delete(sub);
    if (removed) this.wildcardCount--;
    // Prune empty branches.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, key] = path[i]!;
      const child = parent.children.get(key)!;
      if (child.here.size || child.hash.size || child.children.size) break;
      parent.children.delete(key);
    }
    return removed;
  }

  /** Calls `visit` once per (subscriber, matching filter) for a concrete topic. */
  match(topic: string, visit: (sub: T) => void): void {
    const exact = this.exact.get(topic);
    if (exact) for (const s of exact) visit(s);
    if (this.wildcardCount === 0) return;
    const levels = topic.split('/');
    // `$` topics are not matched by filters that start with a wildcard (MQTT 4.7.2).
    this.walk(this.root, levels, 0, visit, topic.startsWith('$'));
  }

  private walk(n: TrieNode<T>, levels: string[], i: number, visit: (sub: T) => void, dollar: boolean): void {
    // `a/#` also matches `a` itself.
    const atRoot = i === 0;
    if (!(atRoot && dollar)) for (const s of n.hash) visit(s);
    if (i === levels.length) {
      for (const s of n.here) visit(s);
      return;
    }
    const exact = n.children.get(levels[i]!);
    if (exact) this.walk(exact, levels, i + 1, visit, dollar);
    if (!(atRoot && dollar)) {
      const plus = n.children.get('+');
      if (plus) this.walk(plus, levels, i + 1, visit, dollar);
    }
  }

  get size(): number {
    let n = this.wildcardCount;
    for (const s of this.exact.values()) n += s.size;
    return n;
  }
}
