/**
 * The one piece of machinery behind the engines: a base class whose
 * instances carry every method of their domains (see store.ts, "Composition").
 */

/** A domain of an engine: builds its implementation over the engine's database handle. */
type Domain = (handle: never) => object;

/** A | B | C → A & B & C. */
type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/** The handle every one of the domains takes. */
type HandleOf<F extends readonly Domain[]> = Intersection<Parameters<F[number]>[0]>;

/** The methods of all the domains together. */
type MethodsOf<F extends readonly Domain[]> = Intersection<ReturnType<F[number]>>;

/**
 * A base class for an engine whose instances carry every method of the
 * given domains, each built once over the handle passed to the constructor:
 *
 *   class SqliteStore extends domainsOf(sqliteUsers, sqliteMessages, …) implements Store { … }
 *
 * Two domains defining the same name is a programming error, refused when
 * the first instance is built rather than letting one silently win.
 */
export function domainsOf<F extends readonly Domain[]>(...domains: F): new (handle: HandleOf<F>) => MethodsOf<F> {
  class Domains {
    constructor(handle: HandleOf<F>) {
      for (const domain of domains) {
        const methods = domain(handle as never);
        for (const name of Object.keys(methods)) {
          if (Object.hasOwn(this, name)) throw new Error(`store domains clash: ${domain.name} defines ${name} again`);
        }
        Object.assign(this, methods);
      }
    }
  }
  // The constructor above gives the instance every member of every domain; class syntax cannot say so.
  return Domains as unknown as new (handle: HandleOf<F>) => MethodsOf<F>;
}
